"""Machine names, human durations and terminal sanitising."""

from __future__ import annotations

import random

import pytest

from centrality_core import durations, names, sanitize
from centrality_core.errors import UsageError

# ---------------------------------------------------------------- names

VALID_NAMES = [
    "a", "0", "gpu01", "gpu-node-07", "gpu_node_07", "node.rack3", "a" * 63,
    "1-2", "x.y_z-w", "ab",
]
INVALID_NAMES = [
    "", "-gpu", "gpu-", ".gpu", "gpu.", "_gpu", "gpu_", "GPU01", "Gpu-node", "gpu node",
    "gpu/01", "gpu:01", "gpu@01", "a" * 64, "ünïcode", "gpu\t1", "gpu\x1b[31m", "gpu;rm",
    "gpu[01-16]", "$(reboot)",
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name):
    assert names.is_valid(name)
    assert names.check(name) == name


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names(name):
    assert not names.is_valid(name)
    with pytest.raises(UsageError) as info:
        names.check(name)
    assert "1-63 characters" in str(info.value)
    assert info.value.exit_code == 2


def test_name_length_limit_is_63():
    assert names.is_valid("n" * 63)
    assert not names.is_valid("n" * 64)


def test_uppercase_is_rejected_so_names_cannot_differ_by_case():
    assert names.is_valid("gpu-node")
    assert not names.is_valid("GPU-node")
    assert not names.is_valid("gpu-Node")


@pytest.mark.parametrize("name", ["gpu01\n", "a\n"])
def test_trailing_newline_is_not_a_valid_name(name):
    assert not names.is_valid(name)


def test_check_shortens_huge_names_in_the_message():
    with pytest.raises(UsageError) as info:
        names.check("X" * 5000)
    assert len(str(info.value)) < 300
    assert "..." in str(info.value)


@pytest.mark.parametrize("hostname, expected", [
    ("GPU_Node-07.example.com", "gpu_node-07.example.com"),
    ("gpu01", "gpu01"),
    ("---", "machine"),
    ("", "machine"),
    ("   ", "machine"),
    ("...", "machine"),
    ("ünïcode", "n-code"),
    ("my host (lab)", "my-host-lab"),
    ("  web01  ", "web01"),
    ("-._edge_.-", "edge"),
])
def test_from_hostname_examples(hostname, expected):
    assert names.from_hostname(hostname) == expected
    assert names.is_valid(names.from_hostname(hostname))


def test_from_hostname_truncates_long_hostnames_to_a_valid_name():
    long = "a" * 62 + "-" + "b" * 30
    name = names.from_hostname(long)
    assert names.is_valid(name) and len(name) <= 63
    assert name == "a" * 62  # the '-' left at the cut is stripped


def test_from_hostname_always_yields_a_valid_name():
    rng = random.Random(7)
    alphabet = "abcXYZ019-._ \t\n/:@ünïİßΣ\u212a\x00\x1b\u202e😀"
    for _ in range(3000):
        host = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))
        name = names.from_hostname(host)
        assert names.is_valid(name), (host, name)
        assert "\n" not in name


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize("text, seconds", [
    (90, 90.0),
    (1.5, 1.5),
    (0, 0.0),
    ("90", 90.0),
    ("2.5", 2.5),
    ("5s", 5.0),
    ("10m", 600.0),
    ("1h30m", 5400.0),
    ("2d", 172800.0),
    ("1w", 604800.0),
    ("250ms", 0.25),
    ("1m30s", 90.0),
    ("1h5m30s", 3930.0),
    ("1.5h", 5400.0),
    (" 30m ", 1800.0),
    ("10M", 600.0),
    ("0s", 0.0),
])
def test_parse_durations(text, seconds):
    assert durations.parse(text) == pytest.approx(seconds)
    assert isinstance(durations.parse(text), float)


@pytest.mark.parametrize("text", [
    "", "   ", "abc", "5x", "s", "ms", "5 s", "1h 30m", "h1", "-5", "-5s", "5s5", "1h-30m",
    "5sec", "five", "1,5s", "--1",
])
def test_bad_durations_raise_usage_error(text):
    with pytest.raises(UsageError) as info:
        durations.parse(text)
    assert repr(text) in str(info.value) or "negative" in str(info.value)


def test_negative_numbers_raise_usage_error():
    with pytest.raises(UsageError, match="negative"):
        durations.parse(-1)


def test_nan_is_not_a_duration():
    with pytest.raises(UsageError):
        durations.parse("nan")


@pytest.mark.parametrize("seconds, text", [
    (None, "-"),
    (-5, "0s"),
    (0, "0s"),
    (4.9, "4s"),
    (59, "59s"),
    (60, "1m00s"),
    (192, "3m12s"),
    (3599, "59m59s"),
    (3600, "1h00m"),
    (7500, "2h05m"),
    (86399, "23h59m"),
    (86400, "1d00h"),
    (273600, "3d04h"),
])
def test_format_durations(seconds, text):
    assert durations.format(seconds) == text


@pytest.mark.parametrize("text", ["5s", "10m", "1h30m", "2d", "59s", "3d04h"])
def test_format_output_parses_back(text):
    seconds = durations.parse(text)
    assert durations.parse(durations.format(seconds)) == seconds


# ---------------------------------------------------------------- sanitize

ESC = "\x1b"


@pytest.mark.parametrize("raw, clean", [
    (f"{ESC}[31mred{ESC}[0m", "red"),                      # SGR colour
    (f"a{ESC}[2J{ESC}[Hb", "ab"),                          # clear screen, home
    (f"x{ESC}[?1049hy", "xy"),                             # private mode
    (f"{ESC}[1;31;40mbold", "bold"),
    (f"t{ESC}]0;pwned title\x07rest", "trest"),            # OSC with BEL
    (f"t{ESC}]0;pwned title{ESC}\\rest", "trest"),         # OSC with ST
    (f"{ESC}]8;;http://evil/{ESC}\\link{ESC}]8;;{ESC}\\", "link"),  # hyperlink
    (f"a{ESC}Pq#0;2;0;0;0#1~~{ESC}\\b", "ab"),             # DCS (sixel)
    (f"a{ESC}_apc payload{ESC}\\b", "ab"),                 # APC
    (f"a{ESC}^pm{ESC}\\b", "ab"),                          # PM
    (f"a{ESC}Xsos{ESC}\\b", "ab"),                         # SOS
    ("a\x9b31mb", "ab"),                                    # 8-bit CSI
    ("a\x9b2Jb", "ab"),
    (f"a{ESC}Mb", "ab"),                                   # reverse index
    ("ring\x07ring", "ringring"),                          # bell
    ("abc\x08\x08\x08xyz", "abcxyz"),                      # backspaces
    ("over\rwrite", "overwrite"),                          # carriage return
    ("nul\x00byte", "nulbyte"),
    ("del\x7fete", "delete"),
    ("c1\x85\x90\x9d\x9fend", "c1end"),
])
def test_for_terminal_removes_escapes_and_controls(raw, clean):
    assert sanitize.for_terminal(raw) == clean


@pytest.mark.parametrize("raw", [f"a{ESC}7b{ESC}8c", f"a{ESC}cb", f"a{ESC}(Bb", f"a{ESC}=b{ESC}>"])
def test_for_terminal_disarms_other_escapes(raw):
    # ESC 7 / ESC 8 (save/restore cursor), ESC c (reset), ESC ( B (charset):
    # the ESC must go; the printable byte after it may stay as plain text.
    out = sanitize.for_terminal(raw)
    assert ESC not in out
    assert out.startswith("a") and "b" in out


def test_for_terminal_keeps_newlines_tabs_and_unicode():
    text = "GPU  Name\tTemp\n  0  A100 ✓\t71°C\nnaïve café 日本語 😀 Σ\n"
    assert sanitize.for_terminal(text) == text


def test_for_terminal_can_fold_newlines():
    assert sanitize.for_terminal("a\nb\tc", keep_newlines=False) == "a b c"


def test_for_terminal_never_leaves_control_characters():
    rng = random.Random(11)
    alphabet = ["\x1b", "[", "]", "P", "\\", "\x07", "\x9b", "\x9d", "0", ";", "m", "a", "\n", "\t",
                "\r", "\x00", "\x7f", "\x85", "é", "✓", "?", "1", "H", "X", "^", "_"]
    for _ in range(3000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        out = sanitize.for_terminal(raw)
        bad = [c for c in out if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]
        assert not bad, (raw, out)


def test_for_terminal_shortcuts_give_what_the_full_pass_gives():
    """Text with no control character skips the escape pass: it must not change a result."""
    def full(text, keep_newlines):
        text = sanitize._CONTROLS.sub("", sanitize._ESCAPES.sub("", text))
        return text if keep_newlines else text.replace("\n", " ").replace("\t", " ")

    rng = random.Random(12)
    alphabet = ["\x1b", "[", "]", "\x9b", "\x9c", "0", "m", "a", " ", "\n", "\t", "\u202e", "é", "日", "\x07"]
    for _ in range(3000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        for keep in (True, False):
            assert sanitize.for_terminal(raw, keep_newlines=keep) == full(raw, keep), repr(raw)


def test_one_line_folds_and_truncates():
    assert sanitize.one_line("short") == "short"
    assert sanitize.one_line(f"a\nb\t{ESC}[31mc") == "a b c"
    long = "x" * 300
    out = sanitize.one_line(long)
    assert len(out) == 256 and out.endswith("…") and out[:-1] == "x" * 255
    assert sanitize.one_line("abcdef", limit=4) == "abc…"
    assert sanitize.one_line("abcd", limit=4) == "abcd"


def test_one_line_counts_length_after_sanitising():
    # escapes do not count towards the limit
    assert sanitize.one_line(f"{ESC}[31m" * 50 + "abcd", limit=4) == "abcd"


def test_unterminated_string_sequences_stop_at_the_end_of_their_line():
    # one bad process name must not hide the rest of an nvidia-smi screen
    screen = f"| 0  N/A  N/A  1234  C  python{ESC}]0;evil\n| 1  N/A  N/A  5678  C  train.py\n"
    assert sanitize.for_terminal(screen) == "| 0  N/A  N/A  1234  C  python\n| 1  N/A  N/A  5678  C  train.py\n"
    assert sanitize.for_terminal(f"a{ESC}Pdcs-without-end\nb") == "a\nb"
    assert sanitize.for_terminal(f"a{ESC}]8;;http://x{ESC}\\link{ESC}]8;;{ESC}\\ b") == "alink b"


@pytest.mark.parametrize("raw", ["\u202egnp.exe", "a\u2066b\u2069c", "x\u200fy", "\u061cz"])
def test_bidi_controls_are_removed_so_text_reads_as_stored(raw):
    out = sanitize.for_terminal(raw)
    assert not any(c in out for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
    assert sanitize.unsafe(raw) and not sanitize.unsafe(out)


def test_8bit_csi_is_removed_with_its_parameters():
    assert sanitize.for_terminal("a\x9b31mb") == "ab"


def test_json_for_terminal_escapes_c1_and_bidi_and_decodes_to_the_same_value():
    import json

    value = {"k\x9b31m": "x\u202ey\x85", "plain": "ok ü"}
    doc = json.dumps(value, ensure_ascii=False)
    safe = sanitize.json_for_terminal(doc)
    assert "\x9b" not in safe and "\u202e" not in safe and "\x85" not in safe
    assert "\\u009b" in safe and "\\u202e" in safe
    assert json.loads(safe) == value
    assert "ü" in safe  # ordinary non-ASCII text is left alone


def test_unsafe_flags_every_control_but_not_ordinary_unicode():
    assert not sanitize.unsafe("fs[/mnt/données].used_bytes")
    for bad in ("a\nb", "a\tb", f"{ESC}[2J", "x\x7f", "x\x9d"):
        assert sanitize.unsafe(bad)
