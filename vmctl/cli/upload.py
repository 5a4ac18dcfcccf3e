"""Command: vmctl upload SOURCE [DESTINATION] [NAME] (Vagrant's `upload`). Thin: parse,
call vmctl.transfer, print."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def upload(words: list[str], *, temporary: bool, compress: bool, compression_type: str | None) -> None:
    """Copy a file or a folder's contents into a running machine over SSH.

    WORDS are SOURCE [DESTINATION] [NAME]; with two, the second is a machine's NAME when a
    machine of that name is created, else the DESTINATION (as Vagrant decides)."""
    from vmctl import term, transfer
    from vmctl.cli.common import project
    from vmctl.errors import UsageError

    if not 1 <= len(words) <= 3:
        raise UsageError("upload takes SOURCE [DESTINATION] [NAME]",
                         hint="e.g. vmctl upload ./site /var/www default")
    compression = transfer.parse_compression(compress, compression_type)
    proj = project("upload", *words)
    source, destination, name = words[0], None, None
    if len(words) == 3:
        destination, name = words[1], words[2]
    elif len(words) == 2:
        created = {m.name for m in proj.machines() if m.state is not None}
        if words[1] in created:
            name = words[1]
        else:
            destination = words[1]
    u = transfer.parse_upload(source, destination, temporary=temporary, compression=compression)
    m = proj.one_machine(name)
    m.require_running()
    where = "a temporary path" if u.temporary else u.destination
    if u.compression:
        term.info(f"==> {m.name}: compressing {u.source} ({u.compression}) for the upload...")
    term.info(f"==> {m.name}: uploading {u.source} to {where}")
    final = transfer.upload(u, m.endpoint(), m.login_key())
    term.out(f"Upload has completed successfully!\n\n  Source: {u.source}\n  Destination: {final}")


def register(app: typer.Typer) -> None:
    import typer

    @app.command("upload")
    def upload_command(
        words: list[str] = typer.Argument(..., metavar="SOURCE [DESTINATION] [NAME]", show_default=False,
                                          help="A file or folder on the host; where it goes in the "
                                          "guest (default: its name, in the SSH user's home); the machine."),
        temporary: bool = typer.Option(False, "-t", "--temporary", help="Upload to a new temporary path in the guest."),
        compress: bool = typer.Option(False, "-c", "--compress", help="Compress the upload (tgz unless -C says zip)."),
        compression_type: str | None = typer.Option(None, "-C", "--compression-type", metavar="zip|tgz",
                                                    help="How to compress it (implies --compress)."),
    ) -> None:
        """Copy a file, or a folder's contents, into a running machine over SSH."""
        upload(words, temporary=temporary, compress=compress, compression_type=compression_type)
