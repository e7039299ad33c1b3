"""gateway.csv_rows: an import file's text -> (line, named non-empty cells) or row errors (pure)."""

from gateway.csv_rows import RowError, read

COLUMNS = ("id", "kind", "note")


def test_rows_carry_their_line_and_only_their_non_empty_cells():
    assert list(read("ID, Kind ,note\n a ,bp,\n\n\nb,glu, x \nc,cgm\n", COLUMNS, ("id",))) == [
        (2, {"id": "a", "kind": "bp"}), (5, {"id": "b", "kind": "glu", "note": "x"}), (6, {"id": "c", "kind": "cgm"})]


def test_the_first_missing_required_column_or_cell_is_the_error():
    assert list(read("note\nx\n", COLUMNS, ("id", "kind"))) == [RowError(1, "COLUMNS", "no 'id' column", "note")]
    assert list(read("id,kind\na,\n,b\n", COLUMNS, ("id", "kind"))) == [
        RowError(2, "INVALID", "the kind is empty", ""), RowError(3, "INVALID", "the id is empty", "")]


def test_a_header_that_is_not_csv_and_rows_that_are_not():
    assert [(e.line, e.reason) for e in read('"id\n', COLUMNS, ("id",))] == [(1, "COLUMNS")]
    assert [item if isinstance(item, tuple) else (item.line, item.reason)
            for item in read('id;note\na;"x"y\nb;z\n', COLUMNS, ("id",))] == [(2, "FIELDS"), (3, {"id": "b", "note": "z"})]
