from odoo import fields, models


class AccountJournal(models.Model):
    _inherit = 'account.journal'

    l10n_cl_dte_enabled = fields.Boolean(
        'Electronic documents (DTE)',
        help='Sign documents posted in this journal as DTEs (folio from a CAF, stamp, signature) and '
             'send them to SII. On a purchase journal: the facturas de compra (46) the company issues.')
