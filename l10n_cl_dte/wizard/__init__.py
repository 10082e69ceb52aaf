from . import l10n_cl_dte_incoming_claim
