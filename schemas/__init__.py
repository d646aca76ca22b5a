"""The flow JSON Schema (data, not code). A package only so an installed convoflow carries it:
read it with importlib.resources.files("schemas")."""
