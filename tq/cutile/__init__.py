"""cutile backend (not implemented yet; registered so that the registry reports why)."""

NAME = "cutile"


def availability():
    return False, "the cutile backend is not implemented yet"


def supports(x, qw):
    return availability()[1]


def matmul(x, qw, *, bias=None):
    raise NotImplementedError(availability()[1])
