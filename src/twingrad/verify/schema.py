"""The JSON Schema (draft 2020-12) of ``twingrad verify --json``, described in docs/verify.md.

Print it with ``python -m twingrad.verify.schema``.
"""

from __future__ import annotations

from .results import KINDS, STATUSES, SUBMISSION_STATUSES

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_COUNTS = {"type": "object", "required": list(STATUSES),
           "properties": {status: {"type": "integer", "minimum": 0} for status in STATUSES},
           "additionalProperties": False}
_TOLERANCE = {"type": "object", "required": ["atol", "rtol"],
              "properties": {"atol": {"type": "number"}, "rtol": {"type": "number"}}}

CHECK = {
    "type": "object",
    "description": "One checked quantity of one CS231n function, over all its cases.",
    "required": ["function", "configuration", "gradient", "kind", "status", "message", "seed", "dtype", "mode", "cases", "shapes",
                 "max_abs_error", "max_rel_error", "tolerance", "references", "kinks", "redraws", "diagnosis"],
    "properties": {
        "function": {"type": "string", "description": "CS231n name: affine_backward, svm_loss, FullyConnectedNet.loss"},
        "configuration": {"type": ["string", "null"],
                          "description": "a student's FullyConnectedNet.loss: plain, batchnorm, layernorm or dropout"},
        "gradient": {"type": ["string", "null"],
                     "description": "dx, dw, ... for gradients; out, loss, running_mean, running_var, out_test, "
                                    "keep_fraction, seed for forward checks; W, b, gamma, beta for the network; "
                                    "null for a whole-function status (missing, error)"},
        "kind": {"enum": list(KINDS)},
        "status": {"enum": list(STATUSES)},
        "message": {"type": ["string", "null"]},
        "seed": {"type": "integer"},
        "dtype": {"enum": ["float64", "float32"]},
        "mode": {"type": ["string", "null"], "description": "full, fast, or full+fast (gradients only)"},
        "cases": {"type": "integer", "minimum": 0},
        "shapes": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}},
                   "description": "distinct shapes of the first input tried"},
        "max_abs_error": _NUMBER_OR_NULL,
        "max_rel_error": _NUMBER_OR_NULL,
        "tolerance": {"type": "object", "additionalProperties": _TOLERANCE,
                      "description": "per reference (autograd, numeric, twin, expected): |got - expected| <= "
                                     "atol + rtol * |expected|"},
        "references": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["max_abs_error", "max_rel_error", "passed"],
            "properties": {"max_abs_error": _NUMBER_OR_NULL, "max_rel_error": _NUMBER_OR_NULL,
                           "passed": {"type": "boolean"}}}},
        "kinks": {"type": "integer", "minimum": 0,
                  "description": "finite-difference elements or directions left out at kinks"},
        "redraws": {"type": "integer", "minimum": 0},
        "diagnosis": {"oneOf": [{"type": "null"}, {
            "type": "object",
            "required": ["case", "seed", "input_shapes", "reproduce"],
            "properties": {
                "gradient": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                "reference": {"type": "string"},
                "worst_index": {"type": "array", "items": {"type": "integer"}},
                "expected": _NUMBER_OR_NULL, "got": _NUMBER_OR_NULL,
                "case": {"type": "integer"}, "seed": {"type": "integer"},
                "input_shapes": {"type": "object",
                                 "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
                "hints": {"type": "array", "items": {"type": "string"}},
                "reproduce": {"type": "string"}, "summary": {"type": "string"}, "text": {"type": "string"},
            }}]},
    },
}

SUBMISSION = {
    "type": "object",
    "required": ["path", "name", "import_error", "internal_error", "uses_twingrad", "dropout_convention",
                 "dropout_note", "status", "exit_code", "summary", "functions", "timings", "checks"],
    "properties": {
        "path": {"type": ["string", "null"], "description": "as given; null when twingrad checks itself"},
        "name": {"type": "string", "description": "as shown: the path, or the entry of a class folder"},
        "import_error": {"type": ["string", "null"]},
        "internal_error": {"type": ["string", "null"],
                           "description": "the traceback of a twingrad bug met while judging this submission"},
        "uses_twingrad": {"type": "boolean", "description": "the submission imported twingrad"},
        "dropout_convention": {"enum": ["drop", "keep", None],
                               "description": "what dropout's p was taken to mean (null: twingrad itself)"},
        "dropout_note": {"type": ["string", "null"], "description": "what --dropout-convention auto saw"},
        "status": {"enum": list(SUBMISSION_STATUSES)},
        "exit_code": {"enum": [0, 1, 2]},
        "timings": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                    "description": "seconds spent on each function"},
        "summary": {"type": "object", "required": ["functions", "checks"],
                    "properties": {"functions": _COUNTS, "checks": _COUNTS}},
        "functions": {"type": "object", "additionalProperties": {"enum": list(STATUSES)}},
        "checks": {"type": "array", "items": CHECK},
    },
}

_HEAD = {
    "schema": {"const": "twingrad-verify/1"},
    "twingrad_version": {"type": "string"},
    "settings": {"type": "object", "required": ["seed", "cases", "mode", "dtype", "keep_prob"]},
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "twingrad verify --json",
    "oneOf": [
        {"type": "object", "required": ["schema", "twingrad_version", "settings", *SUBMISSION["required"]],
         "properties": {**_HEAD, **SUBMISSION["properties"]}},
        {"type": "object", "required": ["schema", "twingrad_version", "settings", "exit_code", "submissions"],
         "properties": {**_HEAD, "exit_code": {"enum": [0, 1, 2]},
                        "submissions": {"type": "array", "items": SUBMISSION}}},
    ],
}


if __name__ == "__main__":
    import json

    print(json.dumps(SCHEMA, indent=2))
