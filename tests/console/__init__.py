"""Helpers the console's tests share (fixtures are in conftest.py)."""


def notice(page, text: str):  # type: ignore[no-untyped-def]
    """The page's success line that says `text` (Loading… is a status too)."""
    return page.get_by_role("status").filter(has_text=text)
