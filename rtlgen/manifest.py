"""One manifest for every generated design (arrays and SpAtten): the common part and its schema.

Every ``manifest.json`` has the same core (``arch/manifest.schema.json``): format version, kind, name,
top module, spec hash, the Verilog's sha256, line count and module list, the top's ports, parameters
and a cycle contract. The ports are taken from the top component's ``wiring.Signature`` (the same
declaration Amaranth turns into the Verilog port list), so the manifest cannot list a port the Verilog
lacks. Kind-specific sections (an array's operand plans and pipelining, SpAtten's arrays and formats)
sit beside the core.
"""
from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

import jsonschema
from amaranth.lib import wiring

__all__ = ["MANIFEST_VERSION", "signature_ports", "manifest_core", "manifest_schema", "validate_manifest"]

MANIFEST_VERSION = 2


def signature_ports(component: wiring.Component) -> list[dict]:
    """The top's Verilog ports, from its signature: ``{"name", "dir", "bits"}``, clk and rst first."""
    ports = [{"name": "clk", "dir": "in", "bits": 1}, {"name": "rst", "dir": "in", "bits": 1}]
    for path, member, value in component.signature.flatten(component):
        value = value.as_value() if hasattr(value, "as_value") else value
        ports.append({"name": "__".join(str(x) for x in path), "dir": "in" if member.flow == wiring.In else "out",
                      "bits": len(value)})
    return ports


def manifest_core(kind: str, name: str, spec_hash: str, text: str, component: wiring.Component,
                  parameters: dict, cycle_contract: dict) -> dict:
    return {
        "archgen_manifest": MANIFEST_VERSION,
        "kind": kind,
        "name": name,
        "top": name,
        "spec_hash": spec_hash,
        "verilog_file": f"{name}.v",
        "verilog_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "verilog_lines": text.count("\n"),
        "modules": sorted(set(re.findall(r"^module\s+\\?([^\s(]+)", text, flags=re.M))),
        "ports": signature_ports(component),
        "parameters": parameters,
        "cycle_contract": cycle_contract,
    }


def manifest_schema() -> dict:
    return json.loads(resources.files("archgen.arch").joinpath("manifest.schema.json").read_text())


def validate_manifest(manifest: dict) -> None:
    """Raise jsonschema.ValidationError if ``manifest`` breaks the common schema (a generator bug)."""
    jsonschema.validate(manifest, manifest_schema())
