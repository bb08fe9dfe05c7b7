"""The click face of the command table in ``main.py``: help pages and usage errors.

``main.py`` parses every well-formed command line itself (importing click costs
tens of milliseconds on each call); it hands over here for ``--help``, an empty
command line, or a usage error, so the user gets click's usual messages.
"""

import click

from .errors import OCIError
from .main import ALIASES, COMMANDS, GLOBAL, REST


def _option(flags, dest, kind, default):
    if kind is False:
        return click.Option(flags, is_flag=True, default=default)
    if kind == "list":
        return click.Option(flags, multiple=True)
    return click.Option(flags, type=int if kind == "int" else str, default=default, show_default=default is not None)


def _options(table):
    """Group the table's aliases ("-b", "--bundle") into one click option each."""
    by_dest = {}
    for flag, (dest, kind, default) in table.items():
        by_dest.setdefault(dest, ([], kind, default))[0].append(flag)
    return [_option(sorted(flags, key=len, reverse=True), dest, kind, default)
            for dest, (flags, kind, default) in by_dest.items()]


def build():
    group = click.Group("ociruntime", params=_options(GLOBAL),
                        help="A runc-compatible OCI container runtime.")
    group.params.append(click.Option(["--version", "-v"], is_flag=True, help="print the version"))
    for name, (help_text, table, positionals) in COMMANDS.items():
        params = _options(table) + [
            click.Argument([dest], nargs=-1) if required == REST else click.Argument([dest], required=required)
            for dest, required in positionals]
        group.add_command(click.Command(name, params=params, help=help_text))
    return group


def run_click(argv):
    """Let click render help (or an error) for argv; returns the exit code."""
    try:
        build().main(argv, prog_name="ociruntime", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    return 0


def help_main(topic=None):
    """`help [command]` (or `h`), as runc's: the same pages as --help, on stdout."""
    if topic is None:
        return run_click(["--help"])
    command = ALIASES.get(topic, topic)
    if command not in COMMANDS:
        raise OCIError(f"no help topic for {topic!r}")
    return run_click([command, "--help"])


def usage_error(argv, message):
    """Show click's usage line for the command in argv and ``message``; exit code 2."""
    group = build()
    ctx = click.Context(group, info_name="ociruntime")
    command = next((group.commands[a] for a in argv if a in group.commands), None)
    if command is not None:
        ctx = click.Context(command, info_name=command.name, parent=ctx)
    click.echo(ctx.get_usage(), err=True)
    click.echo(f"Error: {message}", err=True)
    return 2
