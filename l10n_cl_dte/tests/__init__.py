from . import test_l10n_cl_dte
from . import test_folio_concurrency
