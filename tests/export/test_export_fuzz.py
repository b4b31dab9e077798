"""Exports are data too: every file of a real export truncated, flipped, replaced, edited,
removed, linked or joined by a stranger, then loaded by ``attnkit translate --engine
ctranslate2``. Each load ends in one line naming the file, or translates exactly as the
untouched export does: never a traceback, never a silently different output. Edits made
by hand and re-signed in the manifest are judged by what the loader checks beyond the
checksums (the record, config.json, the vocabularies against the tokenizer). And the
export command over whatever it finds at ``--out``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnkit.cli import main

from ..commands.test_reliability import one_error_line
from .conftest import GOLDEN

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ctranslate2") is None,
                                reason="ctranslate2 is not installed (attnkit[deploy])")

INFO, MANIFEST = "attnkit-export.json", "manifest.json"
FILES = ["model.bin", "config.json", "shared_vocabulary.json", INFO, MANIFEST,
         "tokenizer/tokenizer.json", "tokenizer"]
SENTENCES = ["3 1 4", "9 0 2 7", "5 5 8", "6"]
FUZZ = settings(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A real export of the golden run (float32, 16 positions)."""
    from attnkit.export import export_ctranslate2

    root = tmp_path_factory.mktemp("pristine")
    return export_ctranslate2(shutil.copytree(GOLDEN, root / "run"), root / "ct2")


def translate(model: Path, capsys) -> tuple[int, str, str]:
    """``attnkit translate --engine ctranslate2`` (one thread: outputs compared exactly)."""
    code = main(["translate", "--engine", "ctranslate2", "--model", str(model), "--threads",
                 "1", "--beam-size", "2", *SENTENCES])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def reference(pristine) -> tuple[str, str]:
    """(stdout, stderr) of translating with the untouched export."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["translate", "--engine", "ctranslate2", "--model", str(pristine),
                     "--threads", "1", "--beam-size", "2", *SENTENCES]) == 0
    assert out.getvalue().count("\n") == len(SENTENCES)
    return out.getvalue(), err.getvalue()


def loads_cleanly_or_not_at_all(model: Path, named: str, reference, capsys) -> str | None:
    """The verdict every load of a damaged export must meet; the error line, if any."""
    code, out, err = translate(model, capsys)
    assert "Traceback" not in err and code in (0, 2), (code, err)
    if code == 0:
        assert (out, err) == reference, "a damaged export translated differently"
        return None
    line = one_error_line(err, "translate")
    assert named in line, line
    return line


# ---------------------------------------------------------------- damage of any kind
def _json_edit(data, rng: random.Random):
    """``data`` changed in one place: a key dropped or set, two items swapped, one dropped."""
    target = data
    while isinstance(target, (dict, list)) and target and rng.random() < 0.5:
        target = target[rng.choice(list(target) if isinstance(target, dict)
                                   else range(len(target)))]  # one level down
    value = rng.choice([None, True, False, -3, 0, 15, 10**12, 1.5, "", "x", "<eos>", [], {}])
    if isinstance(target, dict) and target:
        key = rng.choice(list(target))
        if rng.random() < 0.5:
            del target[key]
        else:
            target[key] = value
    elif isinstance(target, list) and len(target) > 1:
        i, j = rng.randrange(len(target)), rng.randrange(len(target))
        if i == j:
            del target[i]
        else:
            target[i], target[j] = target[j], target[i]
    else:
        return value  # a scalar (or empty) document: replaced
    return data


HOWS = ["truncate", "flip", "append", "replace", "delete", "folder", "link", "json", "rename",
        "stray"]
PARAMS = st.fixed_dictionaries({
    "cut": st.integers(0, 10**6), "pos": st.integers(0, 10**6), "bit": st.integers(1, 255),
    "extra": st.binary(min_size=1, max_size=16),
    "content": st.one_of(st.sampled_from([b"", b"[]", b"{}", b"null", b"{nope", b'"x"',
                                          b"\xff\xfe\x00", b"[1, 2]"]), st.binary()),
    "other": st.sampled_from(["model.bin", "config.json", INFO]),
    "seed": st.integers(0, 2**32 - 1)})


def damage(d: Path, name: str, how: str, cut, pos, bit, extra, content, other, seed) -> None:
    """Do ``how`` to the file ``name`` of the export folder ``d``."""
    f = d / name
    raw = b"" if f.is_dir() else f.read_bytes()
    if how == "truncate":
        f.write_bytes(raw[: cut % len(raw)])
    elif how == "flip":
        i = pos % len(raw)
        f.write_bytes(raw[:i] + bytes([raw[i] ^ bit]) + raw[i + 1:])
    elif how == "append":
        f.write_bytes(raw + extra)
    elif how in ("replace", "delete", "folder", "link"):
        shutil.rmtree(f) if f.is_dir() else f.unlink()
        if how == "replace":
            f.write_bytes(content)
        elif how == "folder":
            f.mkdir()
        elif how == "link":
            f.symlink_to(d / other)
    elif how == "json":
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        f.write_text(json.dumps(_json_edit(data, random.Random(seed))))
    elif how == "rename":
        os.rename(f, f.with_name(f.name + ".bak"))
    else:  # a file nobody listed, beside it
        f.with_name("stray.txt").write_bytes(extra)


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("name", FILES)
@settings(FUZZ, max_examples=4)
@given(params=PARAMS)
def test_a_damaged_export_is_one_line_naming_the_file(pristine, reference, tmp_path_factory,
                                                      capsys, name, how, params):
    if name == "tokenizer" and how in ("truncate", "flip", "append", "json"):
        how = "replace"  # a folder has no bytes of its own
    model = Path(shutil.copytree(pristine, tmp_path_factory.mktemp("damaged") / "ct2"))
    damage(model, name, how, **params)
    loads_cleanly_or_not_at_all(model, "stray.txt" if how == "stray" else name, reference,
                                capsys)


# ------------------------------------------- edits by hand, re-signed in the manifest
def resign(model: Path, name: str, data: bytes) -> None:
    """Write ``data`` as ``name`` and list its new size and SHA-256 in the manifest, as
    someone editing the export by hand would: only what the loader checks beyond the
    checksums can catch this."""
    (model / name).write_bytes(data)
    manifest = json.loads((model / MANIFEST).read_text())
    manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (model / MANIFEST).write_text(json.dumps(manifest))


def _edited(name: str, change):
    def edit(model: Path) -> None:
        data = json.loads((model / name).read_text())
        changed = change(data)  # edits data in place, or returns a new document
        data = changed if isinstance(changed, (dict, list)) else data
        resign(model, name, json.dumps(data).encode())
    return edit


def _swap(tokens: list, i: int = 4, j: int = 7) -> None:
    tokens[i], tokens[j] = tokens[j], tokens[i]


def _truncated(model: Path) -> None:
    resign(model, "model.bin", (model / "model.bin").read_bytes()[:5000])


RESIGNED = {
    "record is []": (_edited(INFO, lambda d: []), rf"{INFO}: expected a JSON object, got list"),
    "config.json not JSON": (lambda m: resign(m, "config.json", b"{nope"),
                             r"config.json: not valid JSON"),
    "config.json another eos": (_edited("config.json", lambda d: d.update(eos_token="<unk>")),
                                r"config.json: eos_token must be '<eos>'"),
    "config.json another option": (
        _edited("config.json", lambda d: d.update(multi_query_attention=True)),
        rf"config.json: differs from the copy in {INFO} written with it "
        r"\(in multi_query_attention\)"),
    "vocabulary swapped": (_edited("shared_vocabulary.json", _swap),
                           r"shared_vocabulary.json: token 4 is 'one', while tokenizer/ has "
                           r"'9'"),
    "vocabulary entry removed": (_edited("shared_vocabulary.json", lambda t: t.pop()),
                                 r"shared_vocabulary.json: 23 tokens, while tokenizer/ has 24"),
    "vocabulary entry edited": (
        _edited("shared_vocabulary.json", lambda t: t.__setitem__(9, "zer0")),
        r"shared_vocabulary.json: token 9 is 'zer0', while tokenizer/ has 'zero'"),
    "tokenizer swapped": (_edited("tokenizer/tokenizer.json", lambda d: _swap(d["tokens"])),
                          r"shared_vocabulary.json: token 4 is '9', while tokenizer/ has 'one'"),
    "tokenizer not JSON": (lambda m: resign(m, "tokenizer/tokenizer.json", b"\x00"),
                           r"tokenizer/tokenizer.json: not valid JSON"),
    "model.bin truncated": (_truncated, r"model.bin: CTranslate2 cannot load it: "),
    "another quantization": (_edited(INFO, lambda d: d.update(quantization="int4")),
                             rf"{INFO}: quantization must be one of 'float32', 'int16', 'int8'; "
                             r"got 'int4' \(did you mean 'int8'\?\)"),
    "another format": (_edited(INFO, lambda d: d.update(format=3)),
                       rf"{INFO}: describes format 3 for 'ctranslate2'; this attnkit reads "
                       r"format 2"),
    "a model that cannot be": (_edited(INFO, lambda d: d["model"].update(num_heads=0)),
                               rf"{INFO}: model"),
    **{f"positions {v!r}": (_edited(INFO, lambda d, v=v: d.update(positions=v)),
                            rf"{INFO}: positions must be the model's max_len \(16\); got ")
       for v in (0, -1, "16", 16.0, 1.5, True, None, 10**12, 15, [16])},
}


@pytest.mark.parametrize("edit,message", RESIGNED.values(), ids=RESIGNED)
def test_a_re_signed_edit_is_one_line_naming_the_file(pristine, reference, tmp_path, capsys,
                                                      edit, message):
    model = Path(shutil.copytree(pristine, tmp_path / "ct2"))
    edit(model)
    line = loads_cleanly_or_not_at_all(model, "ct2", reference, capsys)
    assert line is not None and line.split(": error: ", 1)[1].startswith(str(model))
    assert re.search(message, line), line


def test_a_swapped_vocabulary_would_change_the_output(pristine, tmp_path):
    """Why the vocabularies are held to the tokenizer: the engine reads them, attnkit
    decodes its ids with the tokenizer, so a swap there changes the translation."""
    import ctranslate2

    model = Path(shutil.copytree(pristine, tmp_path / "ct2"))
    _edited("shared_vocabulary.json", lambda t: _swap(t, 13, 7))(model)  # three <-> one
    engine = ctranslate2.Translator(str(model), device="cpu", intra_threads=1)
    clean = ctranslate2.Translator(str(pristine), device="cpu", intra_threads=1)
    src = [["3", "1", "4"]]
    assert engine.translate_batch(src)[0].hypotheses != clean.translate_batch(src)[0].hypotheses


def test_an_export_from_before_checksums_names_both_formats(pristine, tmp_path):
    from attnkit.export import load_ctranslate2

    model = Path(shutil.copytree(pristine, tmp_path / "ct2"))
    info = json.loads((model / INFO).read_text())
    (model / INFO).write_text(json.dumps({**info, "format": 1}))
    (model / MANIFEST).unlink()
    with pytest.raises(ValueError, match=rf"{INFO}: export format 1 \(attnkit .*, before "
                                         r"exports had checksums\); this attnkit reads "
                                         r"format 2: export the run again"):
        load_ctranslate2(model)


# ------------------------------------------------------- the export command at --out
def _earlier(at: Path, pristine: Path) -> list[Path]:
    shutil.copytree(pristine, at)
    return []


def _mine(path: Path) -> list[Path]:
    """A folder with a file of the user's in it (never to be touched)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "mine.txt").write_text("mine")
    return [path / "mine.txt"]


def _file(out: Path, pristine: Path) -> list[Path]:
    out.write_text("mine")
    return [out]


def _linked(out: Path, pristine: Path) -> list[Path]:
    _earlier(out.with_name("real"), pristine)
    out.symlink_to(out.with_name("real"))
    return [out.with_name("real") / INFO]


def _killed(role: str, out_too: bool):
    """What an export killed part-way leaves: its unfinished ``.ct2.export-ROLE``."""
    def state(out: Path, pristine: Path) -> list[Path]:
        if out_too:
            _earlier(out, pristine)
        if role == "old":
            _earlier(out.with_name(".ct2.export-old"), pristine)
        _mine(out.with_name(".ct2.export-new"))
        return []
    return state


STATES = {
    "absent": lambda out, p: [],
    "an empty folder": lambda out, p: out.mkdir() or [],
    "a file": _file,
    "a folder of mine": lambda out, p: _mine(out),
    "an earlier export": _earlier,
    "an earlier export and a file of mine": lambda out, p: _earlier(out, p) + _mine(out),
    "a link to an export": _linked,
    "a killed build": _killed("new", out_too=True),
    "killed between the renames": _killed("old", out_too=False),
    "killed removing the old one": _killed("old", out_too=True),
}


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("state", STATES.values(), ids=STATES)
def test_the_export_command_over_whatever_is_at_out(pristine, tmp_path, capsys, state, force):
    """Success or one line naming --out; what is not an export's is never touched; an
    export at --out stays whole; nothing of a killed export is left beside it."""
    from attnkit.export import verify_export

    out = tmp_path / "exports" / "ct2"
    out.parent.mkdir()
    mine = {p: p.read_text() for p in state(out, pristine)}
    code = main(["export", "ctranslate2", "--checkpoint", str(GOLDEN), "--out", str(out),
                 "--quantization", "int8", *(["--force"] if force else [])])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert one_error_line(err, "export ctranslate2").startswith(
            "attnkit export ctranslate2: error: --out: ")
    else:
        assert json.loads((out / INFO).read_text())["quantization"] == "int8"
    if (out / INFO).is_file() and not out.is_symlink() and out not in {p.parent for p in mine}:
        verify_export(out)  # an earlier export, kept or put back, or the new one: whole
    assert {p: p.read_text() for p in mine} == mine  # nothing of the user's lost
    assert not [n for n in os.listdir(out.parent) if n.startswith(".")]
