"""The one exception the data layer raises for bad files, bad specs and impossible splits."""


class DataError(ValueError):
    """Input data or a dataset spec that cannot be used; the message names the file, column and
    problem."""
