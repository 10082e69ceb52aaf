from odoo import fields, models

from ..models.l10n_cl_dte_incoming import ANSWER_ACTIONS, CLAIMS


class L10nClDteIncomingClaim(models.TransientModel):
    """Claim a received DTE: the action (RCD, RFP, RFT) and the reason the law requires."""
    _name = 'l10n_cl_dte.incoming.claim'
    _description = 'Claim a received DTE'

    incoming_ids = fields.Many2many('l10n_cl_dte.incoming', required=True)
    action = fields.Selection([a for a in ANSWER_ACTIONS if a[0] in CLAIMS], required=True, default='RCD')
    reason = fields.Char(required=True, help='Told to the supplier in the answer (EstadoDTEGlosa).')

    def action_claim(self):
        for rec in self.incoming_ids:
            rec._answer(self.action, self.reason)
        return {'type': 'ir.actions.act_window_close'}
