"""The conditional-policy benchmark split (benchmarks/make_conditional_split.py): the committed prompt
files are what the script writes, and the extra training prompts keep the split's rules, checked on
the parsed prompts by set logic (the oracle), not by the script's own bookkeeping."""
import sys
from pathlib import Path

from findcli.evaluation import read_suite
from findcli.shapes.world import parse_prompt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import make_conditional_split as mcs  # noqa: E402

PROMPTS = ROOT / "benchmarks" / "prompts"


def _prompts(name: str) -> list[str]:
    return [p for p, _ in read_suite(PROMPTS / name)]


def test_committed_files_are_the_scripts_output(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["make_conditional_split.py", "--seed", "0", "--extra", "6", "--out", str(tmp_path)])
    mcs.main()
    for name in ("conditional_train.txt", "conditional_test.txt", "conditional_train_extra.txt"):
        assert (tmp_path / name).read_text() == (PROMPTS / name).read_text(), name


def test_extra_prompts_keep_the_split_rules():
    train, test, extra = _prompts("conditional_train.txt"), _prompts("conditional_test.txt"), _prompts(
        "conditional_train_extra.txt")
    assert len(extra) == 54 and len(set(extra)) == 54
    assert not set(extra) & (set(train) | set(test))
    specs = {p: parse_prompt(p) for p in train + test + extra}
    seen = {o for p in train for o in specs[p].objects}
    held = {o for p in test for o in specs[p].objects} - seen
    assert len(held) == 4  # the four held-out objects of the split
    pairs = lambda ps: {frozenset(specs[p].objects) for p in ps if specs[p].kind == "relation"}  # noqa: E731
    for p in extra:
        assert not set(specs[p].objects) & held, p
    # no extra relation prompt puts together two objects that a training or test prompt already pairs,
    # and no two extra prompts pair the same objects
    assert not pairs(extra) & (pairs(train) | pairs(test))
    assert len(pairs(extra)) == sum(specs[p].kind == "relation" for p in extra)
    counts = {(specs[p].objects[0], specs[p].count) for p in train if specs[p].kind == "count"}
    assert not {(specs[p].objects[0], specs[p].count) for p in extra if specs[p].kind == "count"} & counts
    # every relation gets the same number of extra prompts, and each block of 9 covers all templates
    rel = [specs[p].relation for p in extra if specs[p].kind == "relation"]
    assert {r: rel.count(r) for r in set(rel)} == {r: 6 for r in mcs.RELATIONS}
    assert {specs[p].relation for p in extra[:9] if specs[p].relation} == set(mcs.RELATIONS)
