from . import controllers
from . import models
from . import wizard


def _post_init_hook(env):
    """Companies whose Chilean chart was loaded before this module: tag the IVA tax group with
    SII code 14 (new companies get it from the chart template, see models/template_cl.py)."""
    for company in env['res.company'].search([('chart_template', '=', 'cl')]):
        env['account.chart.template'].with_company(company)._l10n_cl_dte_tag_tax_groups()
