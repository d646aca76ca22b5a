"""The shipped flows (YAML data, not code). A package only so an installed convoflow carries them:
read them with importlib.resources.files("flows")."""
