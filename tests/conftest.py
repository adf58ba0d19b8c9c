"Fixtures shared by the test modules."
import pytest, torch
from msvar.core import get_preset
from msvar.tokenizer import Tokenizer
from msvar.hit import HITTokenizer
from msvar.var import SRVAR
from msvar.inference import SRModel


@pytest.fixture(scope="module")
def toy():
    "A random `test`-preset SR model (HIT tokenizer + VAR), the same in every module that asks for it."
    tp = get_preset("test"); torch.manual_seed(0)
    return SRModel(HITTokenizer(Tokenizer.from_preset(tp), tp), SRVAR.from_preset(tp)).eval()
