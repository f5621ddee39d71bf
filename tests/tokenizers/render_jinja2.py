#!/usr/bin/python3
"""Reference chat-template renderer: python3-jinja2 set up as Hugging Face transformers sets it up.

transformers' apply_chat_template renders with
  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                extensions=[AssistantTracker, jinja2.ext.loopcontrols])
plus a `tojson` filter that is json.dumps(ensure_ascii=False) (Jinja's own escapes HTML and sorts
keys), the globals raise_exception and strftime_now, and the variables special_tokens_map,
messages, tools (None), documents (None), add_generation_prompt and the caller's extra kwargs.
This module does the same, independently of the C++ engine, for compare.py.

  /usr/bin/python3 render_jinja2.py CONFIG_JSON|- CASES_JSON   (prints a JSON list of results)

A case is {"messages": [...], "add_generation_prompt": bool, "extra": {...}} and may carry its
own "template" (then no special tokens are set). A result is {"ok": true, "text": ...} or
{"ok": false, "error": ...}.
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(Extension):
    """transformers' {% generation %} block, minus the assistant-mask bookkeeping."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_tokens_map(config):
    """transformers' special_tokens_map: the special tokens that are set, as strings."""
    def text(v):
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and isinstance(v.get("content"), str):
            return v["content"]
        return None

    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token"):
        t = text(config.get(key))
        if t is not None:
            out[key] = t
    extra = [t for t in map(text, config.get("additional_special_tokens") or []) if t is not None]
    if extra:
        out["additional_special_tokens"] = extra
    return out


def chat_template_of(config):
    t = config.get("chat_template")
    if isinstance(t, list):
        t = {e["name"]: e["template"] for e in t}.get("default")
    return t


def render_cases(config, cases):
    env = make_env()
    results = []
    for case in cases:
        try:
            if "template" in case:
                source, specials = case["template"], {}
            else:
                source, specials = chat_template_of(config), special_tokens_map(config)
            template = env.from_string(source)
            kwargs = {**specials, **case.get("extra", {})}
            kwargs.setdefault("tools", None)
            kwargs.setdefault("documents", None)
            text = template.render(messages=case["messages"],
                                   add_generation_prompt=case.get("add_generation_prompt", False),
                                   **kwargs)
            results.append({"ok": True, "text": text})
        except Exception as e:  # noqa: BLE001 - every failure is a result to compare
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    return results


def main():
    config = {} if sys.argv[1] == "-" else json.load(open(sys.argv[1], encoding="utf-8"))
    cases = json.load(open(sys.argv[2], encoding="utf-8"))
    json.dump(render_cases(config, cases), sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
