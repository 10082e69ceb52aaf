from . import test_l10n_cl_dte
from . import test_folio_concurrency
from . import test_books
from . import test_reception
from . import test_emission_types
from . import test_emission_operations
from . import test_webhooks
from . import test_metrics
