"""The profile summary sorts each py-spy sample into the first cost its stack passed through."""

from bench.profile_summary import summarize

RAW = """\
main (cli.py:1);Runner.run (asyncio/runners.py:118);Store.enrol (control_plane/store/db.py:480);do_execute (sqlalchemy/engine/default.py:9) 30
main (cli.py:1);Runner.run (asyncio/runners.py:118);SSHConnection._recv_packet (asyncssh/connection.py:1);EdDSAPublicKey.verify (asyncssh/crypto/ed.py:3) 20
main (cli.py:1);Runner.run (asyncio/runners.py:118);SSHConnection._recv_packet (asyncssh/connection.py:1);Ingest.received (control_plane/ingest.py:40) 10
main (cli.py:1);Runner.run (asyncio/runners.py:118) 25
main (cli.py:1);Runner.run (asyncio/runners.py:118);GCMCipher.encrypt_and_sign (asyncssh/crypto/cipher.py:1) 15
 40
"""


def test_samples_go_to_the_first_matching_cost_and_empty_stacks_are_left_out():
    costs, total, empty = summarize(RAW.splitlines())
    assert (total, empty) == (100, 40)
    assert costs["store: enrolment (SQLite + SQLAlchemy)"] == 30
    assert costs["SSH key exchange and authentication"] == 20
    assert costs["metric ingest and rollups"] == 10  # under an SSH packet, but ingest is what it did
    assert costs["SSH packets: cipher, framing, channels"] == 15
    assert costs["event loop (uvloop, native)"] == 25
