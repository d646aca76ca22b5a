"""Loading flows: positions, YAML pitfalls, the model a valid file becomes, and reading many files."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from engine.load import load_paths, load_text
from engine.messages import Choice
from engine.model import DEFAULT_CANCEL_WORDS, Expect, FlowSet, Route
from engine.yaml_source import parse
from validation_kit import FIXTURES, SHIPPED, validation_registry


def test_fixture_flows_load_into_the_model():
    report = load_paths([str(FIXTURES)], validation_registry())
    assert report.problems == []
    flows = {f.name: f for f in report.flows}
    pay = flows["omari_payment"]
    assert pay.title == "Omari Mobile Payment"
    assert pay.start == "ask_reference"
    assert pay.triggers == ("pay", "payment", "make payment", "omari payment")
    assert pay.expire_after == timedelta(minutes=10)
    assert pay.cancel_step == "void" and pay.expire_step == "void"
    ask_amount = pay.steps["ask_amount"]
    assert ask_amount.kind == "ask"
    assert ask_amount.expect == Expect("amount", {"min": "0.01", "max": "{{ booking.balance_due }}"})
    assert ask_amount.on_fail == "give_up" and ask_amount.save == "amount" and ask_amount.attempts == 3
    assert pay.steps["ask_channel"].buttons == (
        Choice("ecocash", "Ecocash"),
        Choice("onemoney", "OneMoney"),
        Choice("zimswitch", "ZimSwitch"),
    )
    assert pay.steps["check_big"].kind == "branch"
    assert pay.steps["check_big"].next == (Route("confirm_big", "amount | float >= 1000"), Route("initiate"))
    initiate = pay.steps["initiate"]
    assert initiate.action == "omari.initiate" and initiate.save == "payment"
    assert initiate.on == {"otp_sent": "ask_otp", "failed": "payment_failed", "pending": "pending"}
    assert pay.steps["stopped"].kind == "end" and pay.steps["stopped"].text is None
    assert pay.steps["ask_otp"].expect == Expect("otp", {"min_length": 4, "max_length": 8})
    assert (pay.steps["ask_amount"].line, pay.steps["ask_amount"].col) == (27, 3)
    menu = flows["main_menu"]
    assert menu.steps["to_payment"].target_flow == "omari_payment"
    assert menu.steps["choose"].options[0] == Choice(
        "pay", "Pay for a booking", "Pay with Ecocash, OneMoney or ZimSwitch"
    )
    assert menu.steps["ask_reference"].expect == Expect("regex", {"pattern": "^[A-Za-z]{2}-[A-Za-z0-9-]+$"})
    assert menu.cancel_words == DEFAULT_CANCEL_WORDS and menu.menu_word == "menu"
    assert set(report.sources) == {"main_menu", "omari_payment"}
    file, text = report.sources["omari_payment"]
    assert file.endswith("omari_payment.yaml") and text.startswith("# yaml-language-server")
    assert FlowSet.of(report.flows).latest("omari_payment") is pay


def test_load_text_sets_version_and_file_and_defaults():
    flow, problems = load_text("flow: hi\nsteps:\n  hello:\n    end: Hi\n", "hi.yaml", validation_registry(), version=7)
    assert problems == []
    assert (flow.version, flow.file, flow.title, flow.start) == (7, "hi.yaml", "Hi", "hello")
    assert flow.expire_after is None and flow.triggers == ()


def test_yaml_1_1_words_stay_words():
    text = (
        "flow: words\n"
        "triggers: [yes, 'no', on, 10:30, 2024-01-01]\n"
        "steps:\n"
        "  pick:\n"
        "    ask: Sure?\n"
        "    buttons: {yes: Yes, no: No, off: Off}\n"
        "    save: sure\n"
        "    next: size\n"
        "  size:\n"
        "    ask: Size?\n"
        "    expect: {choice: [y, n]}\n"
        "    next: bye\n"
        "  bye: {end: true}\n"
    )
    flow, problems = load_text(text, "words.yaml", validation_registry())
    assert problems == []
    assert flow.triggers == ("yes", "no", "on", "10:30", "2024-01-01")
    assert [(c.id, c.title) for c in flow.steps["pick"].buttons] == [("yes", "Yes"), ("no", "No"), ("off", "Off")]
    assert flow.steps["size"].expect == Expect("choice", {"choices": ("y", "n")})


def test_list_buttons_get_lowercased_titles_as_ids():
    text = "flow: b\nsteps:\n  pick:\n    ask: Go?\n    buttons: [Yes Please, No]\n    save: go\n    next: bye\n  bye: {end: true}\n"
    flow, _ = load_text(text, "b.yaml", validation_registry())
    assert flow.steps["pick"].buttons == (Choice("yes please", "Yes Please"), Choice("no", "No"))


def test_positions_of_keys_and_values_are_one_based():
    source = parse("flow: x\nsteps:\n  hello:\n    say:   Hi\n", "x.yaml")
    assert source.where(("steps", "hello", "say")) == (4, 12)
    assert source.where(("steps", "hello", "say"), key=True) == (4, 5)
    assert source.where(("steps", "hello", "missing")) == (4, 5)  # falls back to the nearest parent's value
    assert source.where(("nothing",)) == (1, 1)


def test_merge_keys_fill_in_what_the_mapping_does_not_write():
    text = (
        "flow: merged\n"
        "steps:\n"
        "  first: &ask {ask: 'Your number?', expect: phone_zw, save: msisdn, next: bye}\n"
        "  second:\n"
        "    <<: *ask\n"
        "    save: other\n"
        "  bye: {end: true}\n"
    )
    flow, problems = load_text(text, "m.yaml", validation_registry())
    assert [p.code for p in problems] == ["step.unreachable"]
    assert flow.steps["second"].save == "other" and flow.steps["second"].expect == Expect("phone_zw")


def test_warnings_do_not_stop_a_flow_but_errors_do():
    warned, problems = load_text("flow: w\nsteps:\n  hello:\n    say: Hi {{ nme }}\n", "w.yaml", validation_registry())
    assert warned is not None and {p.code for p in problems} == {"template.undefined", "step.dead_end"}
    broken, problems = load_text(
        "flow: w\nsteps:\n  hello:\n    say: Hi\n    next: nowhere\n", "w.yaml", validation_registry()
    )
    assert broken is None and [p.code for p in problems] == ["step.unknown_target"]


def test_variables_saved_by_another_loaded_flow_are_known(tmp_path):
    (tmp_path / "menu.yaml").write_text(
        "flow: main_menu\nsteps:\n  ask_name:\n    ask: Name?\n    save: name\n    next: go\n  go:\n    flow: greet\n"
    )
    (tmp_path / "greet.yaml").write_text("flow: greet\nsteps:\n  hello:\n    end: 'Hi {{ name }}'\n")
    alone, problems = load_text((tmp_path / "greet.yaml").read_text(), "greet.yaml", validation_registry())
    assert [p.code for p in problems] == ["template.undefined"]
    report = load_paths([str(tmp_path)], validation_registry())
    assert report.problems == [] and sorted(f.name for f in report.flows) == ["greet", "main_menu"]


def test_only_yaml_files_of_a_directory_are_read(tmp_path):
    (tmp_path / "a.yml").write_text("flow: a\nsteps:\n  hello: {end: true}\n")
    (tmp_path / "notes.txt").write_text("not a flow")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("flow: b\nsteps:\n  hello: {end: true}\n")
    report = load_paths([str(tmp_path)], validation_registry())
    assert report.files == [str(tmp_path / "a.yml")] and [f.name for f in report.flows] == ["a"]


def test_a_file_that_cannot_be_read_is_a_located_problem(tmp_path):
    missing = tmp_path / "gone.yaml"
    os.symlink(tmp_path / "nowhere", missing)
    report = load_paths([str(missing)], validation_registry())
    assert not report.ok
    [problem] = report.problems
    assert (problem.file, problem.line, problem.col, problem.code) == (str(missing), 1, 1, "file.unreadable")


def test_a_byte_order_mark_is_fine(tmp_path):
    (tmp_path / "bom.yaml").write_bytes("\ufeffflow: bom\nsteps:\n  hello: {end: Hi}\n".encode("utf-8"))
    report = load_paths([str(tmp_path)], validation_registry())
    assert report.ok and report.flows[0].name == "bom"


def test_problems_are_sorted_by_file_line_and_column(tmp_path):
    (tmp_path / "b.yaml").write_text("flow: b\nsteps:\n  x:\n    say: '{{ a }'\n    next: y\n")
    (tmp_path / "a.yaml").write_text("flow: a\ntitel: A\nsteps:\n  x:\n    say: hi\n    next: nope\n")
    report = load_paths([str(tmp_path)], validation_registry())
    keys = [(p.file, p.line, p.col) for p in report.problems]
    assert keys == sorted(keys) and len(keys) == 4


@pytest.mark.parametrize(
    "text",
    ["", "   \n", "# only a comment\n", "---\n...\n", "# one\r# two\x0c  # three\u2028\n", "\u3000# spaced\n\t\n"],
)
def test_empty_files(text):
    flow, problems = load_text(text, "e.yaml", validation_registry())
    assert flow is None and [(p.line, p.col, p.code) for p in problems] == [(1, 1, "yaml.empty")]


@pytest.mark.parametrize("text", ["# a note\rflow: x\n", "  # a note\n\n  x: 1\n", "#\x1cflow: x\n"])
def test_a_line_after_comments_is_not_empty(text):
    # Lines end where str.splitlines ends them: what follows a comment on the next of those lines is read.
    flow, problems = load_text(text, "e.yaml", validation_registry())
    assert "yaml.empty" not in [p.code for p in problems]


def test_the_registry_is_always_given_and_is_the_one_used():
    from engine.registry import ActionRegistry, Result

    text = "flow: r\nsteps:\n  go:\n    action: some.thing\n    next: bye\n  bye: {end: true}\n"
    with pytest.raises(TypeError):
        load_text(text, "r.yaml")  # no process-wide registry to fall back on
    flow, problems = load_text(text, "r.yaml", ActionRegistry())
    assert flow is None and [p.code for p in problems] == ["action.unknown"]
    knows = ActionRegistry()
    knows.action("some.thing")(lambda ctx, params: Result("ok"))
    flow, problems = load_text(text, "r.yaml", knows)
    assert flow is not None and problems == []


def test_checking_without_building_reports_the_same(tmp_path):
    (tmp_path / "bad.yaml").write_text("flow: bad\nsteps:\n  a:\n    say: '{{ nobody }}'\n    next: b\n")
    for paths in ([str(SHIPPED)], [str(FIXTURES), str(tmp_path)]):
        built = load_paths(paths, validation_registry())
        checked = load_paths(paths, validation_registry(), build=False)
        assert built.flows and checked.flows == [] and checked.sources == {}
        assert (checked.problems, checked.files, checked.ok) == (built.problems, built.files, built.ok)


def test_reading_events_gives_the_composed_nodes_places():
    # parse converts the parser's events as they come (no node graph, to keep a large flow's memory down);
    # every key and value must be placed where yaml.compose's node for it starts, and hold its text.
    import yaml
    from yaml.nodes import MappingNode, ScalarNode

    from engine.yaml_source import _LOADER, parse

    def at(mark):
        return (mark.line + 1, mark.column + 1)

    def walk(node, data, path, source):
        assert path in source.places and source.where(path) == at(node.start_mark)
        if isinstance(node, ScalarNode):
            assert data == node.value or not isinstance(data, str)
        elif isinstance(node, MappingNode):
            assert list(data) == [key.value for key, _ in node.value]
            for key, value in node.value:
                assert source.where(path + (key.value,), key=True) == at(key.start_mark)
                walk(value, data[key.value], path + (key.value,), source)
        else:
            assert len(data) == len(node.value)
            for i, item in enumerate(node.value):
                walk(item, data[i], path + (i,), source)

    files = [*SHIPPED.glob("*.yaml"), *FIXTURES.glob("*.yaml")]
    texts = [f.read_text(encoding="utf-8") for f in files]
    texts.append("flow: x\nsteps:\n  a: {say: hi, next: b}\n  b:\n    - [1, {c: d}]\n    - !!str e\n")
    compared = 0
    for text in texts:
        if "&" in text or "<<" in text:
            continue
        source = parse(text, "x.yaml")
        if source.problems:
            continue
        walk(yaml.compose(text, Loader=_LOADER), source.data, (), source)
        compared += 1
    assert compared > 5


def test_a_key_written_twice_names_the_first_and_what_is_read_after_is_placed():
    # Source keeps no paths while reading; a key written twice names the line of the first one, found
    # while the file is still being read, and everything read after it must be placed too.
    from engine.yaml_source import parse

    source = parse("a: 1\na: 2\nb:\n  c: [x, {d: y}]\n", "x.yaml")
    assert [p.code for p in source.problems] == ["yaml.duplicate_key"]
    assert "first on line 1" in source.problems[0].message
    assert source.where(("b",), key=True) == (3, 1)
    assert source.where(("b", "c", 1, "d")) == (4, 14)
    assert source.where(("b", "c", 1, "e")) == (4, 10)  # not written: its nearest written parent
    assert source.places[("a",)] >> 64 == 1 << 32 | 1


def test_places_follow_aliases_merges_and_refused_values():
    # The places are found by walking the data in the order it was converted: an alias is converted again
    # (placed where its anchor is), merged keys come after the mapping's own, a value refused as too deep
    # or recursive is one None, and a key written twice is skipped (the first one's line counted past the
    # values before it).
    from engine.yaml_source import parse

    text = (
        "a: &x {b: 1, c: [2, 3]}\n"
        "d: *x\n"
        "e:\n  <<: *x\n  b: 4\n  f: 5\n"
        "g: {h: [1, {i: 2}], j: 3}\n"
        "k: 6\n"
        "g: 7\n"
        "l: " + "[" * 70 + "]" * 70 + "\n"
        "m: &r [1, *r]\n"
        "n: 8\n"
    )
    source = parse(text, "x.yaml")
    assert [(p.line, p.col, p.code) for p in source.problems] == [
        (9, 1, "yaml.duplicate_key"),
        (10, 68, "yaml.too_deep"),
        (11, 4, "yaml.recursive"),
    ]
    assert "first on line 7" in source.problems[0].message
    assert source.data["e"] == {"b": 4, "f": 5, "c": [2, 3]}
    assert source.where(("d", "c", 1)) == (1, 21)
    assert source.where(("e", "b")) == (5, 6)  # its own, not the merged one
    assert source.where(("e", "c"), key=True) == (1, 14)
    assert source.where(("e", "c", 0)) == (1, 18)
    assert source.where(("e", "f"), key=True) == (6, 3)
    assert source.where(("g",), key=True) == (7, 1)
    assert source.where(("k",)) == (8, 4)
    assert source.where(("l", 0)) == (10, 5)
    assert source.where(("m", 1)) == (11, 4)
    assert source.where(("n",)) == (12, 4) and source.where(("n",), key=True) == (12, 1)


def test_key_places_counted_agree_with_the_places_walked():
    # A built flow asks where each step is written through key_places, which counts the values before each
    # step instead of placing all they hold: every mapping's answer must be where()'s, for aliases, merges,
    # keys written twice and refused values too (one source asked only key_places, another only where).
    from engine.yaml_source import parse

    texts = [f.read_text(encoding="utf-8") for f in [*SHIPPED.glob("*.yaml"), *FIXTURES.glob("*.yaml")]]
    texts.append(
        "a: &x {b: 1, c: [2, 3]}\nd: *x\ne:\n  <<: *x\n  b: 4\n  f: 5\ng: {h: [1, {i: 2}], j: 3}\nk: 6\ng: 7\n"
        "l: " + "[" * 70 + "]" * 70 + "\nm: &r [1, *r]\nn: {o: {p: [q, {r: s}]}}\n"
    )

    def mappings(value, path):
        if isinstance(value, dict):
            yield path
            for key, item in value.items():
                yield from mappings(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from mappings(item, (*path, index))

    compared = 0
    for text in texts:
        counted, walked = parse(text, "x.yaml"), parse(text, "x.yaml")
        for path in mappings(counted.data, ()):
            mapping = counted.data
            for part in path:
                mapping = mapping[part]
            expected = {key: walked.where((*path, key), key=True) for key in mapping}
            assert counted.key_places(path) == expected, (path, text[:200])
            compared += 1
        assert counted._places is None  # counted, not walked
    assert compared > 100
    assert parse("a: [1]\n", "x.yaml").key_places(("a",)) == {} == parse("a: 1\n", "x.yaml").key_places(("b",))
