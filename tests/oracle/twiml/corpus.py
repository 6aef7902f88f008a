"""Placeholder: the verdict corpus generator (filled in next)."""


def generate(schema):
    return []
