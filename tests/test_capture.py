"""C-level output kept out of the terminal: ``c_stderr_lines`` around one image decode."""

from __future__ import annotations

import os

from cifarkit._capture import c_stderr_lines


def test_fd2_lines_are_captured_then_fd2_is_restored(capfd):
    with c_stderr_lines() as lines:
        os.write(2, b"TIFFFillStrip: Read error on strip 3\n\n  second line  \n")
        assert lines == []  # filled when the block ends
    assert lines == ["TIFFFillStrip: Read error on strip 3", "second line"]
    with c_stderr_lines() as again:
        pass
    assert again == []  # the sink was emptied: nothing carried over
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_lines_are_captured_even_when_the_block_raises(capfd):
    try:
        with c_stderr_lines() as lines:
            os.write(2, b"Fax4Decode: Bad code word\n")
            raise ValueError("boom")
    except ValueError:
        pass
    assert lines == ["Fax4Decode: Bad code word"]
    assert capfd.readouterr().err == ""


def test_a_forked_child_gets_its_own_sink():
    with c_stderr_lines():
        pass  # the parent's sink exists now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: capture, report through the pipe, leave without cleanup
        with c_stderr_lines() as lines:
            os.write(2, b"child line\n")
        os.write(write, "|".join(lines).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    got = os.read(read, 1000).decode()
    os.close(read)
    with c_stderr_lines() as mine:
        pass
    assert got == "child line" and mine == []
