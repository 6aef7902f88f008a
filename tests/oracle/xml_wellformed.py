"""Well-formedness verdicts of Python's expat (stdlib) for tests/xml_oracle.rs.

Reads a JSON array of documents on stdin and prints a JSON array of booleans: true when expat, with
namespace processing (as roxmltree does), parses the document without error.
"""
import json
import sys
import xml.parsers.expat


def well_formed(doc: str) -> bool:
    parser = xml.parsers.expat.ParserCreate(encoding="UTF-8", namespace_separator=" ")
    try:
        parser.Parse(doc.encode("utf-8", "surrogatepass"), True)
        return True
    except xml.parsers.expat.ExpatError:
        return False


print(json.dumps([well_formed(d) for d in json.load(sys.stdin)]))
