"""``selfsup prepare --pii``: e-mails, phone numbers and IP addresses replaced by placeholders, on a table
of positive and negative cases (dates, version numbers and plain numbers must survive), the embedded
corpus (3.2 MB of real text with no PII: nothing replaced) and the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selfsup_text.data.gensim_data import corpus_documents
from selfsup_text.prepare.pii import PiiOptions, scrub_corpus, scrub_pii
from selfsup_text.prepare.pipeline import run_pipeline

# (text, what it must become)
FOUND = [
    ("mail john.doe@example.com now", "mail <EMAIL> now"),
    ("write to a+b@mail.co.uk.", "write to <EMAIL>."),
    ("Ünïcode: jörg.müller@beispiel.de", "Ünïcode: <EMAIL>"),
    ("server 192.168.1.20 is up", "server <IP> is up"),
    ("resolve with 8.8.8.8.", "resolve with <IP>."),
    ("bind 0.0.0.0:8080 please", "bind <IP>:8080 please"),
    ("ip 2001:db8:85a3::8a2e:370:7334 x", "ip <IP> x"),
    ("full 2001:0db8:0000:0000:0000:ff00:0042:8329 form", "full <IP> form"),
    ("loop ::1 and fe80::1%eth0", "loop <IP> and <IP>"),
    ("mapped ::ffff:192.0.2.128 address", "mapped <IP> address"),
    ("call +44 20 7946 0958 today", "call <PHONE> today"),
    ("+1-202-555-0143", "<PHONE>"),
    ("+33 6 12 34 56 78", "<PHONE>"),
    ("Tel: +49 (0)30 1234567", "Tel: <PHONE>"),
    ("+15551234567", "<PHONE>"),
    ("(202) 555-0143", "<PHONE>"),
    ("202-555-0143", "<PHONE>"),
    ("202.555.0143", "<PHONE>"),
    ("call 202 555 0143.", "call <PHONE>."),
    ("1-800-555-0199", "<PHONE>"),
    ("London 020 7946 0958", "London <PHONE>"),
    ("Paris 06 12 34 56 78", "Paris <PHONE>"),
    ("Sydney (02) 9876 5432", "Sydney <PHONE>"),
]

KEPT = [
    "version 1.2.3.4", "v1.2.3.4", "release 10.0.19041.1", "Python 3.10.2", "1.2.3.4.5", "256.1.1.1",
    "15.01.2023", "2023-01-15", "01/15/2023", "born 12.05.1990", "ISO 2023-01-15T10:30:00", "Tel 01.02.2003",
    "1990-1995", "1234567890", "1,234,567", "population 12 345 678", "$1,234.56", "pi is 3.14159", "10.0",
    "ISBN 978-3-16-148410-0", "ISBN 0-19-852663-6", "978 0 19 852663 6", "0-306-40615-2",
    "at 12:30:45", "MAC 00:1a:2b:3c:4d:5e", "ratio 1:2:3", "std::vector", "dead::beef", "John 3:16",
    "user@localhost", "@handle", "name [at] example [dot] com", "page 123-456", "score 3-1", "555-0143",
    "coords 40.7128, -74.0060", "year 2023",
]


@pytest.mark.parametrize("text, expected", FOUND)
def test_pii_found(text, expected):
    assert scrub_pii(text)[0] == expected


@pytest.mark.parametrize("text", KEPT)
def test_not_pii_left_alone(text):
    new, counts = scrub_pii(text)
    assert new == text and sum(counts.values()) == 0


def test_counts_kinds_and_placeholders():
    text = "a@b.org, c@d.net, 10.1.2.3, fe80::1 and +44 20 7946 0958."
    new, counts = scrub_pii(text)
    assert new == "<EMAIL>, <EMAIL>, <IP>, <IP> and <PHONE>."
    assert counts == {"emails": 2, "ips": 2, "phones": 1}
    only_mail = PiiOptions(phones=False, ips=False, email_placeholder="[mail]")
    assert scrub_pii(text, only_mail)[0] == "[mail], [mail], 10.1.2.3, fe80::1 and +44 20 7946 0958."
    texts, totals = scrub_corpus([text, "nothing here", "x@y.com"])
    assert texts[1] == "nothing here" and totals == {"emails": 3, "phones": 1, "ips": 2, "documents": 2}


def test_real_text_has_no_false_positives():
    """Wikipedia articles and news are full of dates, times, years, scores, decimals and ratios, and hold no
    e-mail, phone number or IP address: nothing may be replaced."""
    docs = corpus_documents("all")
    scrubbed, totals = scrub_corpus(docs)
    assert totals == {"emails": 0, "phones": 0, "ips": 0, "documents": 0} and scrubbed == docs


def test_pipeline_replaces_instead_of_removing(tmp_path):
    (tmp_path / "in").mkdir()
    doc = ("Contact the office at office@example.org or on 020 7946 0958 during the week. "
           "The release 2.4.1.0 shipped on 2021-03-04 to 1,200 users.")
    (tmp_path / "in" / "a.txt").write_text(doc)

    def text_of(out):
        tokens = np.fromfile(out / "train.bin", dtype="<u2")
        return bytes(int(t) - 5 for t in tokens if t != 3).decode("utf-8")

    manifest = run_pipeline(["in"], tmp_path / "pii", tokenizer="bytes", split="1,0", near_dup_threshold=None,
                            base_dir=tmp_path, pii=True)
    assert text_of(tmp_path / "pii") == ("Contact the office at <EMAIL> or on <PHONE> during the week. "
                                         "The release 2.4.1.0 shipped on 2021-03-04 to 1,200 users.")
    assert manifest.pii == {"emails": 1, "phones": 1, "ips": 0, "documents": 1}
    written = json.loads((tmp_path / "pii" / "manifest.json").read_text())
    assert written["pii"] == manifest.pii and written["settings"]["pii"]["emails"] is True
    assert "office@example.org" not in json.dumps(written)  # counts only, never the values
    # without --pii: e-mails are removed by the URL clean-up as before, phone numbers stay
    plain = run_pipeline(["in"], tmp_path / "plain", tokenizer="bytes", split="1,0", near_dup_threshold=None,
                         base_dir=tmp_path)
    assert text_of(tmp_path / "plain").startswith("Contact the office at or on 020 7946 0958 during")
    assert plain.pii == {} and "pii replaced" not in plain.summary()
