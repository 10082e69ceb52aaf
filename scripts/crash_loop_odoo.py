# Driver of scripts/crash-loop, run inside `odoo-bin shell` (stdin), which provides `env`.
# Not imported by anything else. CRASH_MODE=setup configures the company once; CRASH_MODE=round
# creates, posts and sends the round's invoices through the addon's own code paths (action_post,
# the Send to SII button, the send and status crons), committing as those paths do. The
# orchestrator kills this process with SIGKILL at random moments and starts it again: every step
# here is written to be resumed from whatever the database holds.
# ruff: noqa: F821  (env comes from odoo-bin shell)
import base64
import json
import os
import sys
import time

from odoo import fields

ISSUER_RUT = '76543210-3'
CUSTOMER_RUT = '77123456-9'
FINAL = ('accepted', 'accepted_with_objections', 'rejected')


def say(*parts):
    print('crash-driver:', *parts, flush=True)


def company_env():
    company = env.ref('base.main_company')
    return env(context=dict(env.context, allowed_company_ids=[company.id])), company


def setup():
    kit = json.loads(os.environ['CRASH_KIT'])
    e, company = company_env()
    say('READY')
    e['ir.config_parameter'].sudo().set_param('l10n_cl_dte.trusted_sii_key_dirs', kit['sii_keys_dir'])
    company.write({
        'vat': ISSUER_RUT,
        'name': 'Comercial Los Aromos SpA',
        'street': 'Av. Providencia 1234',
        'city': 'Providencia',
        'l10n_cl_activity_description': 'Venta al por mayor de alimentos',
        'l10n_cl_dte_acteco_codes': '463020',
        'l10n_cl_dte_resolution_number': 80,
        'l10n_cl_dte_resolution_date': '2014-08-22',
        'l10n_cl_sii_regional_office': 'SANTIAGO ORIENTE',
        'l10n_cl_dte_environment': 'simulator',
        'l10n_cl_dte_simulator_url': os.environ['CRASH_SIM_URL'],
    })
    journal = e['account.journal'].search([('type', '=', 'sale'), ('company_id', '=', company.id)], limit=1)
    journal.write({'l10n_latam_use_documents': True, 'l10n_cl_dte_enabled': True})
    e['l10n_cl_dte.certificate'].create({
        'p12_file': base64.b64encode(open(kit['cert'], 'rb').read()),
        'p12_password': open(kit['password']).read().strip(),
        'company_id': company.id,
    })
    e['l10n_cl_dte.caf'].create({
        'caf_file': base64.b64encode(open(kit['caf'], 'rb').read()), 'company_id': company.id})
    e['res.partner'].create({
        'name': 'Distribuidora Sur Limitada',
        'ref': 'crash-loop-customer',
        'is_company': True,
        'country_id': env.ref('base.cl').id,
        'l10n_latam_identification_type_id': env.ref('l10n_cl.it_RUT').id,
        'vat': CUSTOMER_RUT,
        'l10n_cl_sii_taxpayer_type': '1',
        'l10n_cl_activity_description': 'Distribucion de alimentos',
        'street': 'Los Carrera 455',
        'city': 'Concepcion',
    })
    env.cr.commit()
    say('setup done')


def run_round():
    e, company = company_env()
    rnd, batch = int(os.environ['CRASH_ROUND']), int(os.environ['CRASH_BATCH'])
    tag = 'crash-r%03d-' % rnd
    Move = e['account.move']
    partner = e['res.partner'].search([('ref', '=', 'crash-loop-customer')], limit=1)
    journal = e['account.journal'].search([('type', '=', 'sale'), ('company_id', '=', company.id)], limit=1)
    doc_type = e['l10n_latam.document.type'].search([('code', '=', '33'), ('country_id.code', '=', 'CL')], limit=1)
    iva = e['account.tax'].search([('company_id', '=', company.id), ('type_tax_use', '=', 'sale'),
                                   ('amount', '=', 19), ('amount_type', '=', 'percent')], limit=1)
    # 1. Drafts (one commit each, like a user saving them).
    have = set(Move.search([('ref', '=like', tag + '%')]).mapped('ref'))
    say('READY')  # registry warmed up: from here on every moment is a kill point
    for i in range(batch):
        ref = '%s%03d' % (tag, i)
        if ref in have:
            continue
        Move.create({
            'move_type': 'out_invoice', 'ref': ref, 'partner_id': partner.id, 'journal_id': journal.id,
            'invoice_date': fields.Date.context_today(partner), 'l10n_latam_document_type_id': doc_type.id,
            'invoice_line_ids': [(0, 0, {'name': 'Resma papel carta', 'quantity': 1 + i + rnd % 7,
                                         'price_unit': 28900, 'tax_ids': [(6, 0, iva.ids)]})],
        })
        env.cr.commit()
    moves = Move.search([('ref', '=like', tag + '%')], order='id')
    say('drafts', len(moves))
    # 2. Post one by one (folio taken under the CAF row lock, signed, committed).
    for move in moves.filtered(lambda m: m.state == 'draft'):
        move.action_post()
        env.cr.commit()
        say('posted', move.name)
    # 3. The Send to SII button on every invoice whose DTE waits, then the crons until done.
    waiting = moves.filtered(lambda m: m.l10n_cl_dte_document_ids.filtered(lambda d: d.state == 'to_send'))
    if waiting:
        waiting.action_l10n_cl_dte_send()
        env.cr.commit()
    Doc = e['l10n_cl_dte.document']
    for _ in range(200):
        Doc._cron_send()
        env.cr.commit()
        docs = moves.l10n_cl_dte_document_ids
        # The simulator reaches its final state at once (step_delay_s=0): bring the next poll
        # forward instead of waiting for the status cron's 30 s back-off.
        docs.filtered(lambda d: d.state == 'sent').sudo().write({'next_poll': False})
        env.cr.commit()
        Doc._cron_poll_status()
        env.cr.commit()
        docs.invalidate_recordset()
        states = docs.mapped('state')
        if len(docs) == len(moves) and all(s in FINAL for s in states):
            say('DONE', json.dumps({s: states.count(s) for s in set(states)}))
            return
        time.sleep(0.2)
    say('NOT DONE', docs.mapped(lambda d: (d.name, d.state, d.sii_message)))
    sys.exit(3)


if os.environ.get('CRASH_MODE') == 'setup':
    setup()
else:
    run_round()
