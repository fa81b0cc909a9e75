"""The one exception type a user is meant to see.

Anything raised as ``UserError`` is printed by the CLI as plain lines (no
traceback) and the process exits with status 2. Every message names the
problem and, where one exists, the fix.
"""


class UserError(Exception):
    """A problem with the user's input (recipe, files, flags), not a bug.

    Args:
        *lines: one line per problem; they are printed in order.
    """

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = list(lines)
