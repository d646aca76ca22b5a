"""Every problem code `flows validate` can report: its severity, what it means and how to fix it.

Codes are stable: tools and people match on them. The "Writing flows" guide shows this table, and the
test suite holds a broken flow for each code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    severity: str  # "error" stops the flow from loading; "warning" does not (unless --strict)
    meaning: str
    fix: str


CODES: dict[str, Code] = {
    # Reading the file
    "file.unreadable": Code("error", "The file could not be opened.", "Check the path and its permissions."),
    "yaml.encoding": Code("error", "The file is not UTF-8 text.", "Save it as UTF-8 in your editor."),
    "yaml.bad_character": Code(
        "error",
        "The file holds a character YAML does not allow (a control character).",
        "Delete the character; retype the line if you cannot see it.",
    ),
    "yaml.empty": Code(
        "error", "The file is empty (or only comments).", "Write a flow: at least `flow:` and `steps:`."
    ),
    "yaml.syntax": Code(
        "error",
        "The text is not valid YAML at this place.",
        "Check indentation (spaces, not tabs) and quotes; put text containing `: ` or starting with `{`, `[`, `*`, `&` or `!` in quotes.",
    ),
    "yaml.duplicate_key": Code(
        "error",
        "The same name is written twice in one mapping; only one could be kept.",
        "Remove or rename one of them.",
    ),
    "yaml.not_mapping": Code(
        "error", "The file is a list or a single value, not `name: value` lines.", "Start the file with `flow: <name>`."
    ),
    "yaml.tag": Code(
        "error",
        "A YAML tag such as `!foo` or `!!binary` was used.",
        "Remove the tag; flows use plain text, numbers, lists and mappings.",
    ),
    "yaml.bad_key": Code("error", "A name before `:` is a list or a mapping.", "Use a plain word before `:`."),
    "yaml.bad_merge": Code(
        "error",
        "`<<:` is followed by something other than an alias of a mapping.",
        "Write `<<: *name` where `&name` marks a mapping.",
    ),
    "yaml.recursive": Code(
        "error",
        "An alias `*name` is used inside the very thing `&name` marks.",
        "Copy the text instead of referring to itself.",
    ),
    "yaml.too_large": Code("error", "Aliases expand the file to an enormous size.", "Remove the nested aliases."),
    "yaml.too_deep": Code(
        "error", "Lists or mappings are nested far deeper than a flow needs.", "Flatten the structure."
    ),
    # The shape of the flow (schemas/flow.schema.json)
    "field.unknown": Code(
        "error",
        "A field this flow, step or setting does not have (often a typo).",
        'Use the name suggested by "did you mean", or remove the field.',
    ),
    "field.required": Code("error", "A field that must be there is missing.", "Add the field named in the message."),
    "field.type": Code(
        "error",
        "A field holds the wrong kind of value (text where a number is needed, …).",
        "Write the kind of value the message asks for.",
    ),
    "field.invalid": Code(
        "error",
        "A field's value is not allowed (empty, out of range, badly formed name, unknown check…).",
        "Follow the message: it says what is allowed.",
    ),
    "step.kind_missing": Code(
        "error",
        "A step has none of say, ask, action, flow, end (and no next).",
        "Give the step exactly one of those keys.",
    ),
    "step.kind_ambiguous": Code(
        "error", "A step has two kind keys, e.g. both say and ask.", "Split it into two steps joined by `next`."
    ),
    # Steps and routes
    "step.unknown_target": Code(
        "error",
        "next, on, on_fail, start, cancel.step or expire.step names a step that does not exist.",
        'Fix the name (see "did you mean") or add the step.',
    ),
    "step.unreachable": Code(
        "warning", "No route leads to this step, so it never runs.", "Route to it from another step, or delete it."
    ),
    "step.dead_end": Code(
        "warning",
        "A say, ask or action step has no `next`: the conversation stops there without saying so.",
        "Add `next: <step>`, or finish with an `end:` step.",
    ),
    "step.no_default_route": Code(
        "warning",
        "Every route in a `next` list has a condition; when none holds the conversation stops with an apology.",
        "End the list with a plain `- goto: <step>`.",
    ),
    "step.endless_loop": Code(
        "error",
        "Steps that only lead to each other, with no question on the way: the conversation would go round until the step limit stops it with an apology.",
        "Route one of the steps to a question (`ask`) or an `end`.",
    ),
    "save.reserved": Code("error", "`save` uses a name convoflow sets itself (contact).", "Save into another name."),
    # Flows together
    "flow.bad_duration": Code(
        "error", "`expire.after` is not a duration.", "Write a number then s, m, h or d: 30s, 10m, 2h, 1d."
    ),
    "flow.closing_question": Code(
        "warning",
        "The cancel or expiry step leads to a question; nobody can answer while the conversation closes, so it stops there.",
        "Route the cancel/expiry step to actions, messages and an end only.",
    ),
    "flow.duplicate_name": Code("error", "Two files use the same flow name.", "Rename one flow (`flow:`)."),
    "flow.duplicate_trigger": Code(
        "error",
        "Two flows claim the same trigger (compared ignoring case, surrounding space and punctuation).",
        "Keep the trigger in one flow only.",
    ),
    "flow.not_checked": Code(
        "warning",
        "Another file loaded together has a YAML error, so the hand-overs and variables that file might provide are not checked yet.",
        "Fix the YAML error of the file named; the checks run again then.",
    ),
    "flow.unknown_flow": Code(
        "error",
        "A `flow:` step hands over to a flow that is not loaded.",
        "Fix the name, or validate the other flow's file together with this one.",
    ),
    # Questions
    "ask.expect_with_choices": Code(
        "warning",
        "A question with buttons or options also has `expect`, which is never used: the answer is one of the choices.",
        "Remove `expect`.",
    ),
    "ask.buttons_and_options": Code(
        "error", "A step has both buttons and options.", "Keep buttons (up to 3) or options (up to 10), not both."
    ),
    "ask.numbered_option_ids": Code(
        "warning",
        "A button or option id is a number other than its row number: a customer who types that number gets another row.",
        "Use words for ids (`ecocash: Ecocash`), or number the rows in order.",
    ),
    "expect.bad_regex": Code(
        "error",
        "The regex of an `expect: {regex: …}` check does not compile.",
        "Fix the pattern (the message says where it breaks).",
    ),
    "expect.bad_number": Code(
        "error",
        "A min, max, min_length or max_length that is neither a number nor a template.",
        'Write a number, e.g. "10" or "0.01".',
    ),
    "expect.bad_date": Code(
        "error",
        "An after or before of `expect: {date: …}` that is neither a date, today, tomorrow nor a template.",
        "Write a date like 2026-12-25 or 25/12/2026, or today, or a template.",
    ),
    "expect.bad_range": Code(
        "error",
        "min is larger than max (or after is later than before), so no answer can pass.",
        "Swap or correct the limits.",
    ),
    # Actions
    "action.unknown": Code(
        "error",
        "No action of that name is registered.",
        'Fix the name (see "did you mean"); `flows validate` knows every installed action.',
    ),
    "action.bad_params": Code(
        "error",
        "A `with:` parameter is missing, unknown or of the wrong kind for the action.",
        "Give the parameters the action documents.",
    ),
    "action.param_not_template": Code(
        "error",
        "A template in a parameter the action takes exactly as written.",
        "Write a fixed value, or use a parameter the action renders.",
    ),
    "action.unknown_outcome": Code(
        "error", "`on:` routes an outcome the action never returns.", "Use one of the outcomes the message lists."
    ),
    "action.unhandled_outcome": Code(
        "warning",
        "The action may return an outcome that `on:` does not route, and there is no `next`.",
        "Route that outcome in `on:`, or add `next:` for everything else.",
    ),
    # Templates
    "template.syntax": Code(
        "error",
        "A message or condition is not valid Jinja.",
        "Close every `{{` with `}}` and every `{%` with `%}`; conditions are written without braces.",
    ),
    "template.unknown_filter": Code(
        "error",
        "A template uses a filter or test that does not exist.",
        'Fix the name (see "did you mean"), e.g. `money`.',
    ),
    "template.undefined": Code(
        "error",
        "A template reads a variable no step of the loaded flows saves (often a typo).",
        'Save it in an earlier step (`save: name`), or fix the spelling (see "did you mean").',
    ),
    "template.not_saved_yet": Code(
        "error",
        "A template reads a variable on a way through the flow where no earlier step has saved it (a flow handed over to starts with what every hand-over carries).",
        'Save it in a step that comes before on every way here, or write `name | default("")`.',
    ),
    "template.text_as_number": Code(
        "error",
        "A text answer (a button or option id, an amount, typed text) is compared by size, compared with a number or used in arithmetic.",
        'Write `name | int` or `name | float`, or compare with text: `choice == "2"`.',
    ),
    "template.unknown_key": Code(
        "error",
        "A template reads a key that the table saved by `core.set` does not have.",
        'Fix the key\'s spelling (see "did you mean").',
    ),
    # WhatsApp's limits
    "whatsapp.too_many_buttons": Code(
        "error", "More than 3 reply buttons.", "Use at most 3, or use options (up to 10)."
    ),
    "whatsapp.button_title_too_long": Code(
        "error", "A button title is longer than 20 characters.", "Shorten it; explain in the question text."
    ),
    "whatsapp.duplicate_button_title": Code(
        "error", "Two buttons have the same title (ignoring case).", "Give each button its own title."
    ),
    "whatsapp.too_many_options": Code(
        "error", "More than 10 options in one list.", "Split the choice over two questions."
    ),
    "whatsapp.option_title_too_long": Code(
        "error", "An option title is longer than 24 characters.", "Shorten it; put detail in its description."
    ),
    "whatsapp.option_description_too_long": Code(
        "error", "An option description is longer than 72 characters.", "Shorten it."
    ),
    "whatsapp.duplicate_option_title": Code(
        "error", "Two options have the same title (ignoring case).", "Give each option its own title."
    ),
    "whatsapp.list_button_too_long": Code(
        "error", "`list_button` is longer than 20 characters.", "Shorten it, e.g. Choose."
    ),
    "whatsapp.choice_id_too_long": Code(
        "error", "A button id is longer than 256 or an option id longer than 200 characters.", "Use a short id."
    ),
    "whatsapp.text_too_long": Code(
        "error",
        "A message is longer than WhatsApp allows (1024 characters with buttons or options, 4096 otherwise).",
        "Shorten it or split it over two `say` steps.",
    ),
}

__all__ = ["Code", "CODES"]
