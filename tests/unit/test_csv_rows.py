"""Variable rows from CSV uploads (as spreadsheets save them) and from the dashboard's table."""

import codecs

import pytest

from farm.errors import InvalidInput
from farm.templates.csv_rows import decode_csv_bytes, parse_csv_rows, table_rows

LIMITS = dict(max_bytes=1 << 20, max_rows=100)
ROWS = [{"product": "red shoe", "background": "sand dunes"}, {"product": "bag", "background": "snow, at dusk"}]


def _parse(data: bytes, required=("product", "background"), **limits):
    return parse_csv_rows(data, required=required, **{**LIMITS, **limits})


@pytest.mark.parametrize("data", [
    b'product,background\nred shoe,sand dunes\nbag,"snow, at dusk"\n',
    codecs.BOM_UTF8 + b'product,background\r\nred shoe,sand dunes\r\nbag,"snow, at dusk"\r\n',  # Excel "CSV UTF-8"
    'product\tbackground\r\nred shoe\tsand dunes\r\nbag\tsnow, at dusk\r\n'.encode("utf-16"),  # Excel "Unicode text"
    codecs.BOM_UTF16_BE + 'product,background\nred shoe,sand dunes\nbag,"snow, at dusk"\n'.encode("utf-16-be"),
    b'product;background\nred shoe;sand dunes\nbag;snow, at dusk\n',  # Excel in a European locale
    b' product , background \n  red shoe ,sand dunes\n\n , \nbag,"snow, at dusk"\n\n',  # spaces, blank rows
])
def test_spreadsheet_csv_files_give_the_same_rows(data):
    parsed = _parse(data)
    assert parsed.columns == ["product", "background"]
    assert parsed.rows == ROWS


def test_rows_remember_their_line_and_extra_columns_are_kept():
    parsed = _parse(b"product,background,notes\n\nshoe,sand,for the spring mailer\n")
    assert parsed.rows == [{"product": "shoe", "background": "sand", "notes": "for the spring mailer"}]
    assert parsed.sources == [3]
    assert parsed.to_dict()["columns"] == ["product", "background", "notes"]


def test_unicode_text_survives():
    parsed = _parse("product,background\nCrème brûlée,東京の夜\n".encode("utf-8"))
    assert parsed.rows == [{"product": "Crème brûlée", "background": "東京の夜"}]


@pytest.mark.parametrize("data, fragment", [
    ("product,background\nCrème brûlée,sand\n".encode("cp1252"), "not UTF-8 or UTF-16 text; save as 'CSV UTF-8'"),
    ("product,background\nshoe,sand\n".encode("utf-16-le"), "not UTF-8 or UTF-16 text"),  # no BOM
    (codecs.BOM_UTF32_LE + "product\n".encode("utf-32-le"), "not UTF-8 or UTF-16 text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 or UTF-16 text"),
    (b"", "empty"),
    (b"\n\n  \n", "empty"),
    (b",,\nshoe,sand,x\n", "name the columns"),
    (b"product,,background\nshoe,x,sand\n", "column 2 of the header row has no name"),
    (b"product,product,background\nshoe,bag,sand\n", "'product' is named twice"),
    (b"product,colour\nshoe,red\n", "missing required column: background"),
    (b"item,colour\nshoe,red\n", "missing required columns: product, background (the header has: item, colour)"),
    (b"product,background\n", "no rows of values"),
    (b"product,background\nshoe,sand\nbag\n", "line 3 has 1 values; the header names 2 columns"),
    (b"product,background\nshoe,sand,extra\n", "line 2 has 3 values"),
    (b'product,background\n"shoe,sand\n', "line"),
])
def test_bad_files_say_what_is_wrong(data, fragment):
    with pytest.raises(InvalidInput) as caught:
        _parse(data)
    assert caught.value.field == "csv"
    assert fragment in caught.value.message


def test_a_file_over_the_size_limit_is_refused_before_it_is_read():
    data = b"product,background\n" + b"shoe,sand\n" * 200
    with pytest.raises(InvalidInput) as caught:
        _parse(data, max_bytes=1024)
    assert caught.value.field == "csv"
    assert f"the file is {len(data):,} bytes; the limit is 1,024 bytes" in caught.value.message


def test_a_100000_row_file_is_refused_at_the_row_past_the_limit():
    # 100,000 rows, then a broken quote on the very last line: reading the whole file would report
    # that line; stopping at the row past the limit reports the limit.
    data = b"product,background\n" + b"shoe,sand\n" * 100_000 + b'"unterminated\n'
    with pytest.raises(InvalidInput) as caught:
        _parse(data, max_bytes=10 << 20, max_rows=5_000)
    assert caught.value.field == "csv"
    assert "more than 5,000 rows; the limit is 5,000 rows per job" in caught.value.message
    assert len(_parse(b"product,background\n" + b"shoe,sand\n" * 5_000, max_rows=5_000).rows) == 5_000


def test_decode_drops_the_bom():
    assert decode_csv_bytes(codecs.BOM_UTF8 + b"a") == "a"
    assert decode_csv_bytes("a".encode("utf-16")) == "a"


def test_table_rows_as_typed():
    typed = [{"product": "shoe", "background": "sand", "size": 42}, {"product": "", "background": " "},
             {"product": " bag ", "background": None, "size": 3.5}]
    parsed = table_rows(typed, required=["product", "background"], max_rows=10)
    assert parsed.rows == [{"product": "shoe", "background": "sand", "size": "42"},
                           {"product": "bag", "background": "", "size": "3.5"}]
    assert parsed.sources == [0, 2]  # the blank row 1 is skipped
    assert parsed.columns == ["product", "background", "size"]


@pytest.mark.parametrize("rows, field", [
    ("product,background", "rows"),
    ([], "rows"),
    ([{"product": "", "background": ""}], "rows"),
    ([{"product": "shoe", "background": "sand"}, ["bag", "snow"]], "rows[1]"),
    ([{"product": "shoe"}], "rows[0].background"),
    ([{"product": "shoe", "background": "sand"}, {"product": ["a"], "background": "x"}], "rows[1].product"),
    ([{"product": "shoe", "background": True}], "rows[0].background"),
    ([{"product": "shoe", "background": "sand"}] * 11, "rows"),
])
def test_bad_table_rows_name_the_row_and_column(rows, field):
    with pytest.raises(InvalidInput) as caught:
        table_rows(rows, required=["product", "background"], max_rows=10)
    assert caught.value.field == field
