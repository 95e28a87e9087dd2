import pytest

from segmentation.schema import (
    KINDS,
    Schema,
    SchemaError,
    canonical_code,
    default_attributes_path,
    format_codes,
    load_schema,
    parse_attributes,
    parse_codes,
)

HEADER = "attribute,kind,codes,unknown_codes\n"


def test_packaged_arvato_schema_covers_the_real_files():
    schema = load_schema()
    assert len(schema.columns("population")) == 366
    assert len(schema.columns("customers")) == 369
    assert len(schema.columns("mailout_train")) == 367
    assert len(schema.columns("mailout_test")) == 366
    assert schema.id_column == "LNR"
    assert schema.columns("population")[0] == "LNR"
    assert schema.columns("population")[-2:] == ["ANREDE_KZ", "ALTERSKATEGORIE_GROB"]
    assert schema.extras("customers") == ["PRODUCT_GROUP", "CUSTOMER_GROUP", "ONLINE_PURCHASE"]
    assert all(a.kind in KINDS for a in schema)


def test_packaged_schema_decisions_from_the_facts():
    schema = load_schema()
    # default-like states are valid codes, not unknown
    assert "0" in schema["D19_BANKEN_DIREKT"].codes and "0" not in schema["D19_BANKEN_DIREKT"].unknown_codes
    assert "0" in schema["WOHNLAGE"].codes
    assert "10" in schema["D19_GESAMT_DATUM"].codes
    assert schema["CAMEO_DEUG_2015"].unknown_codes == ("-1", "X")
    assert schema["CAMEO_DEU_2015"].unknown_codes == ("XX",)
    assert "9" in schema["ALTERSKATEGORIE_GROB"].unknown_codes
    assert "6" in schema["KBA05_MODTEMP"].codes  # observed undocumented code kept valid
    # compact storage: the real population fits in int8 codes
    assert schema["FINANZ_SPARER"].storage_dtype == "Int8"
    assert schema["GEBURTSJAHR"].storage_dtype == "Int16"
    assert schema["CAMEO_DEU_2015"].storage_dtype == "string"
    decade = schema["PRAEGENDE_JUGENDJAHRE"].derive[0]
    assert decade.name == "PRAEGENDE_JUGENDJAHRE_DECADE" and decade.mapping["15"] == 90


def test_code_syntax():
    assert parse_codes("1..3;7;X") == ("1", "2", "3", "7", "X")
    assert parse_codes("-1;0") == ("-1", "0")
    assert format_codes(parse_codes("1..5;7;X")) == "1..5;7;X"
    assert canonical_code(4.0) == "4" and canonical_code("4.0") == "4" and canonical_code(" X ") == "X"
    assert canonical_code(float("nan")) is None and canonical_code("") is None


def test_other_vendor_schema(other_schema):
    assert other_schema.id_column == "CUST_ID"
    assert [a.name for a in other_schema.features()][:3] == ["INCOME", "REGION", "URBAN"]
    assert other_schema.extras("customers") == ["CHANNEL"]
    assert other_schema.extras("population") == []
    assert other_schema.label("LIFESTAGE_WEALTH") == "Wealth x life stage: wealth"
    assert other_schema.label("REGION=N") == "Region = N"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("attribute;kind;codes;unknown_codes\n", r"line 1: missing required column.*';'-separated"),
        ("attribute,kind,codes\nA,id,\n", "line 1: missing required column.*unknown_codes"),
        (HEADER.replace("\n", ",colour\n") + "A,id,,,red\n", "unknown column.*colour"),
        (HEADER + "ID,id,,\nA,shape,1..3,\n", r"line 3 \(A\): kind 'shape' is not one of"),
        (HEADER + "ID,id,,\nA,ordinal,5..1,\n", r"line 3 \(A\): range '5..1' runs backwards"),
        (HEADER + "ID,id,,\nA,ordinal,,\n", r"line 3 \(A\): a ordinal column needs its valid codes"),
        (HEADER + "ID,id,,\nA,binary,1..3,\n", "exactly two codes"),
        (HEADER + "ID,id,,\nA,mixed,1..3,\n", "needs a derive entry"),
        (
            HEADER + "ID,id,,\nA,ordinal,1..3,\nA,ordinal,1..3,\n",
            r"line 4 \(A\): attribute A is listed twice",
        ),
        (HEADER + "ID,id,,\nA,ordinal,1..3,3\n", "both valid and unknown"),
        (HEADER + "A,ordinal,1..3,\n", "exactly one column must have kind 'id'"),
    ],
)
def test_malformed_attributes_file(text, message):
    with pytest.raises(SchemaError, match=message):
        parse_attributes(text, source="bad.csv")


def test_missing_attributes_file(tmp_path):
    with pytest.raises(SchemaError, match="not found"):
        load_schema(tmp_path / "nope.csv")


def test_integer_codes_match_as_numbers():
    assert canonical_code("04") == "4" and canonical_code("-0") == "0" and canonical_code("04.0") == "4"
    assert parse_codes("01..03;4.0;X") == ("1", "2", "3", "4", "X")
    schema = parse_attributes(HEADER + "ID,id,,\nA,categorical,01;2.0,-09\n")
    assert schema["A"].codes == ("1", "2") and schema["A"].unknown_codes == ("-9",)
    assert schema["A"].storage_dtype == "Int8"


@pytest.mark.parametrize(
    "line, message",
    [
        ("A,ordinal,1.5..3,", r"line 3 \(A\): range '1.5..3' should read LOW..HIGH with integers"),
        ("A,numeric,0..2000000,", "more than a million codes"),
        ("A,ordinal,1..3,,surplus", r"line 3: 5 fields, the header has 4"),
        ("A,id,,", r"line 3 \(A\): a second id column \(the first is ID\)"),
        ('A,ordinal,1..3,,"P=1:1"', None),  # derive needs its column in the header: see below
    ],
)
def test_malformed_lines_are_named(line, message):
    if message is None:
        text = HEADER.replace("\n", ",derive\n") + "ID,id,,,\n" + line + "\n"
        message = r"line 3 \(A\): derive is for mixed columns, this one is ordinal"
    else:
        text = HEADER + "ID,id,,\n" + line + "\n"
    with pytest.raises(SchemaError, match=f"^bad.csv, {message}" if "line" in message else message):
        parse_attributes(text, source="bad.csv")


def test_derive_of_an_unlisted_code_and_clashing_features_are_refused():
    header = HEADER.replace("\n", ",derive\n")
    with pytest.raises(SchemaError, match=r"line 3 \(M\): derive maps code\(s\) 7 not in codes"):
        parse_attributes(header + 'ID,id,,,\nM,mixed,1;2,,"P=1:1,7:2"\n', source="bad.csv")
    with pytest.raises(SchemaError, match=r"line 4 \(M_P\): its feature M_P clashes with a feature of M"):
        parse_attributes(header + 'ID,id,,,\nM,mixed,1;2,,"P=1:1"\nM_P,ordinal,1..3,,\n', source="bad.csv")


def test_a_feature_listed_for_every_table_is_a_feature():
    text = "attribute,kind,codes,unknown_codes,tables\nID,id,,,\n"
    text += "A,ordinal,1..3,,population;customers;mailout_train;mailout_test\nB,ordinal,1..3,,customers\n"
    schema = parse_attributes(text)
    assert [a.name for a in schema.features()] == ["A"]
    assert schema.columns("customers") == ["ID", "A", "B"]


def test_storage_of_text_sentinels_and_wide_spans():
    schema = parse_attributes(
        HEADER + "ID,id,,\nAGE,numeric,18..99,-9;unbekannt\nN,numeric,,unbekannt\nWIDE,numeric,0..100000,-1\n"
        "O,ordinal,1..5,-99999\nT,ordinal,1..9,X\n"
    )
    # a numeric column's text unknown codes are read as missing: it stays an integer column
    assert schema["AGE"].integer_coded and schema["AGE"].storage_dtype == "Int8"
    assert schema["AGE"].text_unknown_codes == ("unbekannt",) and schema["AGE"].integer_unknown_codes == (
        "-9",
    )
    assert schema["N"].storage_dtype == "Int32" and schema["WIDE"].storage_dtype == "Int32"
    # a sentinel far from the codes would make a dense domain of 100,000 positions: stored as text instead
    assert not schema["O"].integer_coded and schema["O"].storage_dtype == "string"
    assert schema["T"].storage_dtype == "string"


def test_dask_token_follows_the_attributes():
    """Dask names tasks by the schema's token (computed once): equal schemas share it, any change in an
    attribute's codes or the source gives another."""
    from dask.base import tokenize

    text = default_attributes_path().read_text(encoding="utf-8-sig")
    schema = parse_attributes(text)
    assert tokenize(schema) == tokenize(parse_attributes(text)) == tokenize(schema)
    changed = text.replace("AGER_TYP,categorical,1..3,-1;0", "AGER_TYP,categorical,1..3,-1;0;9", 1)
    assert changed != text
    assert tokenize(parse_attributes(changed)) != tokenize(schema)
    assert tokenize(Schema(schema.attributes, source="other")) != tokenize(schema)
