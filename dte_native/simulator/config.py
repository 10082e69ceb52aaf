"""Simulator configuration: defaults, JSON file / CLI overrides and live updates.

The whole configuration is one JSON-able dict so that tests can read it, change part of it over
`/_sim/config` and get the same shape back. Unknown keys are rejected early: a typo in a fault
rule would otherwise silently test nothing.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    # Seeded RNG: track ids, seeds, tokens and every probabilistic fault come from it.
    "seed": 1234,
    # SII seeds live 2 minutes [OFFICIAL].
    "seed_ttl_s": 120.0,
    # SII publishes no token lifetime; one hour is what the community observes.
    "token_ttl_s": 3600.0,
    # Envelope states advance one step every `step_delay_s` of simulated clock time
    # (REC -> SOK -> CRT -> FOK -> PDR -> EPR). 0 = final state at once.
    "step_delay_s": 1.0,
    # QueryEstUp answers -11 (ERR_CODE 2) for this long after the upload ("queried too early").
    "early_query_s": 0.0,
    # Checks DTEUpload does synchronously (answering STATUS 7 / 8); the rest become async states
    # (RSC / RFR). SII does both at upload time.
    "upload_checks": ["schema", "signature"],
    # What an identical file uploaded twice gets: "status99" (STATUS 99 at upload) or "rpt"
    # (accepted with a track id, then state RPT).
    "duplicate_mode": "status99",
    # company RUT -> list of sender RUTs allowed to act for it; null = everybody may do anything.
    "authorized": None,
    # Person RUTs allowed to get a token (-07 otherwise); null = any certificate holder.
    "registered_users": None,
    # company RUT -> {"FchResol": "YYYY-MM-DD", "NroResol": N}; companies not listed are not checked.
    "resolutions": {},
    # User-Agent substring DTEUpload needs to answer XML instead of HTML.
    "upload_ua_token": "PROG 1.0",
    # Substrings one of which the boleta envío User-Agent must contain (401 otherwise); [] = any.
    "boleta_ua_allow": ["PROG 1.0"],
    # Enforce the asymmetric boleta hosts (envío only on pangal/rahue) when the host is known.
    "strict_boleta_hosts": True,
    # Largest accepted upload (STATUS 2 above it).
    "max_upload_bytes": 20 * 1024 * 1024,
    # Require the CAF FRMA to verify with a loaded SII key. With no key loaded at all the check is
    # skipped (and noted in the state), so a bare simulator still accepts self-made CAFs.
    "require_caf_signature": True,
    # Check that a note's referenced DTE was already accepted by SII (REF-3-750).
    "strict_references": True,
    # Shares of documents forced to RCH / RPR (seeded RNG), on top of real check failures.
    "reject_share": 0.0,
    "reparo_share": 0.0,
    # Share of documents given minor objections (RLV). A document can also ask for its verdict:
    # "[SIM:RPR]", "[SIM:RLV]" or "[SIM:RCH]" in a Detalle's NmbItem/DscItem (store.SIM_MARKER).
    "rlv_share": 0.0,
    # Final envelope state when documents carry objections and none is rejected: null = EPR (the
    # counts show REPAROS), "RPR" / "RLV", or "auto" (RLV when every objection is minor, else RPR).
    "objection_envelope_state": None,
    # Final state of a processed book (LibroCompraVenta, LibroGuia; no per-type counts): "EPR"
    # or SII's book state "LOK".
    "book_final_state": "EPR",
    # Receiver has 8 days after SII reception to accept or claim.
    "claim_window_days": 8,
    # Simulated clock offset in seconds relative to the wall clock (see /_sim/clock).
    "clock_offset_s": 0.0,
    # Namespace host used in SOAP answers (https://{soap_host}.sii.cl/DTEWS/...).
    "soap_host": "maullin",
    # Fault rules, see README.md ("Fault injection").
    "faults": [],
}

FAULT_KEYS = {"service", "kind", "probability", "count", "seconds", "status", "body", "signal"}
FAULT_KINDS = {
    "latency", "http_error", "drop", "timeout", "token_expired", "html", "truncated",
    "error500", "duplicate", "soap_fault", "latin1_glosa",
}


class ConfigError(ValueError):
    """The configuration has an unknown key or a bad value."""


def validate(cfg: dict[str, Any]) -> None:
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {sorted(unknown)}")
    faults = cfg.get("faults", [])
    if not isinstance(faults, list):
        raise ConfigError("faults must be a list")
    for rule in faults:
        if not isinstance(rule, dict):
            raise ConfigError("each fault must be an object")
        bad = set(rule) - FAULT_KEYS
        if bad:
            raise ConfigError(f"unknown fault keys: {sorted(bad)}")
        if rule.get("kind") not in FAULT_KINDS:
            raise ConfigError(f"unknown fault kind {rule.get('kind')!r}; known: {sorted(FAULT_KINDS)}")
    if cfg.get("objection_envelope_state") not in (None, "RPR", "RLV", "auto"):
        raise ConfigError("objection_envelope_state must be null, 'RPR', 'RLV' or 'auto'")
    if cfg.get("book_final_state") not in ("EPR", "LOK"):
        raise ConfigError("book_final_state must be 'EPR' or 'LOK'")
    if cfg.get("duplicate_mode") not in (None, "status99", "rpt"):
        raise ConfigError("duplicate_mode must be 'status99' or 'rpt'")


def make(overrides: dict[str, Any] | None = None, path: str | Path | None = None) -> dict[str, Any]:
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        validate({**cfg, **data})
        cfg.update(data)
    if overrides:
        validate({**cfg, **overrides})
        cfg.update(copy.deepcopy(overrides))
    validate(cfg)
    return cfg
