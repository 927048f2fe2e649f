"""JUnit XML: one ``<testsuite>`` per submission, one ``<testcase>`` per rubric item.

The structure follows the schema CI systems read (the Jenkins xUnit plugin's
``junit-10.xsd``, which GitHub Classroom, GitLab and most report viewers accept)
and the stricter, older order within it: a suite's ``<properties>`` first, then
its test cases; at most one ``<failure>``, ``<error>`` or ``<skipped>`` per case.
``fail`` is a failure, ``error`` / ``import_error`` / ``internal_error`` an error,
``missing`` skipped; ``pass`` and ``kink`` pass.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

from .scoring import Gradebook, ItemGrade, points_text

_ERRORS = ("error", "import_error", "internal_error")
# Characters XML 1.0 forbids (a student's source line may carry an escape code): replaced, not escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"  # the schema's time: digits and a decimal point, no exponent


def element(book: Gradebook) -> ET.Element:
    """The ``<testsuites>`` element."""
    root = ET.Element("testsuites", name="twingrad verify")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    time = 0.0
    for sub in book.submissions:
        counts = {"tests": len(sub.items), "failures": sum(i.status == "fail" for i in sub.items),
                  "errors": sum(i.status in _ERRORS for i in sub.items)}
        seconds = sum(i.seconds for i in sub.items)
        suite = ET.SubElement(root, "testsuite", name=_clean(sub.name), **{k: str(v) for k, v in counts.items()},
                              skipped=str(sum(i.status == "missing" for i in sub.items)), time=_seconds(seconds))
        properties = ET.SubElement(suite, "properties")
        for name, value in (("status", sub.status), ("points", points_text(sub.points)),
                            ("max_points", points_text(sub.max_points)), ("path", sub.path or ""),
                            ("uses_twingrad", str(sub.uses_twingrad).lower())):
            ET.SubElement(properties, "property", name=name, value=_clean(value))
        for item in sub.items:
            _testcase(suite, sub.name, item)
        for key in totals:
            totals[key] += counts[key]
        time += seconds
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(time))
    return root


def _testcase(suite: ET.Element, classname: str, item: ItemGrade) -> None:
    case = ET.SubElement(suite, "testcase", classname=_clean(classname), name=_clean(item.key),
                         time=_seconds(item.seconds))
    tag = ("failure" if item.status == "fail" else "error" if item.status in _ERRORS
           else "skipped" if item.status == "missing" else None)
    if tag:
        lines = item.text.splitlines()
        # the first line after "key: status" says what went wrong; the whole text is the body
        message = lines[1].strip() if len(lines) > 1 else lines[0] if lines else item.status
        child = ET.SubElement(case, tag, type=item.status, message=_clean(message))
        child.text = _clean(item.text)
    elif item.status != "pass":  # a kink: passed, with the note
        ET.SubElement(case, "system-out").text = _clean(item.text)


def render(book: Gradebook) -> bytes:
    """The XML file's bytes (UTF-8, with a declaration)."""
    tree = ET.ElementTree(element(book))
    ET.indent(tree)
    out = io.BytesIO()
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return out.getvalue() + b"\n"
