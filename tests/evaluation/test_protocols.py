import subprocess
import sys
from pathlib import Path

from evaluation.protocols import PROTOCOLS, protocol_name


def test_protocol_name_is_the_protocol_that_eval_exclude_history_selects_on():
    assert protocol_name(True) == "history_skipped" and protocol_name(False) == "plain"
    assert set(PROTOCOLS) == {protocol_name(True), protocol_name(False)} and PROTOCOLS[0] == "plain"


def test_the_json_reading_studies_tools_load_no_torch():
    # studies/curve_table.py, recipe_seeds.py and sasrec_report.py read committed JSON; they take the protocol
    # names from this module, which must stay light
    code = ("import sys, studies.curve_table, studies.recipe_seeds, studies.sasrec_report; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])  # the repository root, where the packages are
    assert out.stdout.strip() == "False"
