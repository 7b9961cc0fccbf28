"""The ONNX backend test cases shipped inside the onnx package (pytorch-converted,
pytorch-operator): every case in scope imports and matches its expected outputs; the
out-of-scope ones (onnx_conformance.OUT_OF_SCOPE, docs/onnx.md) are refused up front."""

import pytest

pytest.importorskip("onnx")

from onnx_conformance import OUT_OF_SCOPE, cases, run_case




CASES = cases()
IN_SCOPE = [c for c in CASES if c[1] not in OUT_OF_SCOPE]
REFUSED = [c for c in CASES if c[1] in OUT_OF_SCOPE]


@pytest.mark.parametrize("suite, name, folder", IN_SCOPE, ids=[c[1] for c in IN_SCOPE])
def test_in_scope_case_matches(suite, name, folder, cconv_onnx):
    run_case(cconv_onnx.import_onnx, folder)


@pytest.mark.parametrize("suite, name, folder", REFUSED, ids=[c[1] for c in REFUSED])
def test_out_of_scope_case_is_refused_with_a_clear_error(suite, name, folder,
                                                         cconv_onnx):
    with pytest.raises(cconv_onnx.OnnxImportError):
        run_case(cconv_onnx.import_onnx, folder)


def test_the_shipped_cases_are_found():
    if not CASES:
        pytest.skip("this onnx package ships no backend test data")
    assert {c[0] for c in CASES} == {"pytorch-converted", "pytorch-operator"}
    assert set(OUT_OF_SCOPE) <= {c[1] for c in CASES}, "an out-of-scope name is misspelt"
