"""The one exception type that means "the user asked for something invalid"."""


class UserError(ValueError):
    """A bad value from a person (a flag, a YAML key, an operand, a file).

    Its message is one line naming the bad value and what was expected; the CLI prints it alone and
    exits with status 2. Anything else that escapes is a bug and keeps its stack trace.
    """
