"""Jinja feature cases for the chat-template engine (compare.py `jinja`).

Each template is rendered by the C++ engine and by python3-jinja2 (render_jinja2.py) with the
same variables; the outputs must be equal byte for byte, and a case that fails in Python must fail
in C++. Together they exercise every construct the engine claims to support (chat_template.h):
whitespace control, loops, scoping, namespaces, macros, operators, Python str()/repr() of values,
filters, tests, methods, tojson and literals. The three real templates are covered by
conversations.py; these cases keep the engine honest beyond them.
"""

MESSAGES = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": " Hi there "},
    {"role": "assistant", "content": "Hello\nworld"},
    {"role": "user", "content": "Bye"},
]

TEMPLATES = {
    # Whitespace: trim_blocks, lstrip_blocks, -/+ modifiers, comments, raw, trailing newline.
    "ws_blocks": "a\n  {% if true %}\n    b\n  {% endif %}\nc\n",
    "ws_minus": "x   {%- if true -%}   y   {%- endif -%}   z",
    "ws_var_minus": "[ {{- ' v ' -}} ]\n{{ 'w' }}\n",
    "ws_plus": "  {%+ if true %}kept{% endif %}\n  {% if true +%}\nnot trimmed{% endif %}",
    "ws_comment": "one\n  {# a comment #}\ntwo {#- c -#}  three\n{# c +#}\nfour",
    "ws_raw": "{% raw %}{{ not evaluated }} {% if %}{% endraw %}\nafter",
    "ws_two_trailing_newlines": "x\n\n",
    "ws_crlf": "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n",
    "ws_tabs": "\t{% for m in messages %}\n\t\t{{ m.role }}\n\t{% endfor %}\n",
    "ws_var_no_lstrip": "  {{ 'x' }}  \n  {% set y = 1 %}  \n",
    # Loops.
    "loop_vars": "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                 "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};"
                 "{% endfor %}",
    "loop_else": "{% for x in [] %}no{% else %}empty{% endfor %}|{% for x in [1] %}{{ x }}"
                 "{% else %}no{% endfor %}",
    "loop_filter": "{% for m in messages if m.role == 'user' %}{{ loop.index }}:{{ m.content }}"
                   "{% endfor %}",
    "loop_break_continue": "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}"
                           "{% if i > 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "loop_cycle_prev_next": "{% for i in range(4) %}{{ loop.cycle('a', 'b') }}"
                            "{{ loop.previtem is defined }}{{ loop.nextitem | default('-') }}"
                            "{% endfor %}",
    "loop_nested": "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} "
                   "{% endfor %}{{ loop.index }}|{% endfor %}",
    "loop_unpack": "{% for k, v in {'x': 1, 'y': [2]}.items() %}{{ k }}={{ v }};{% endfor %}"
                   "{% for a, b in [(1, 2), [3, 4]] %}{{ a + b }}{% endfor %}",
    "loop_string_dict": "{% for c in 'héllo' %}{{ c }}.{% endfor %}{% for k in {'b': 1, 'a': 2} %}"
                        "{{ k }}{% endfor %}",
    "loop_range": "{{ range(3) | list }}{{ range(1, 10, 3) | list }}{{ range(5, 0, -2) | list }}",
    # Scoping and namespaces.
    "scope_for": "{% set x = 1 %}{% for i in range(3) %}{% set x = i %}{{ x }}{% endfor %}{{ x }}",
    "scope_if": "{% if true %}{% set y = 5 %}{% endif %}{{ y }}",
    "namespace": "{% set ns = namespace(total=0, names='') %}{% for m in messages %}"
                 "{% set ns.total = ns.total + 1 %}{% set ns.names = ns.names ~ m.role[0] %}"
                 "{% endfor %}{{ ns.total }} {{ ns.names }}",
    "set_tuple": "{% set a, b = 1, 2 %}{% set (c, d) = ['x', 'y'] %}{{ a }}{{ b }}{{ c }}{{ d }}",
    "set_block": "{% set x %}  inner {{ 1 + 1 }} {% endset %}[{{ x }}]"
                 "{% set y | upper %}shout{% endset %}{{ y }}",
    "filter_block": "{% filter upper %}abc {{ 'def' }}{% endfilter %}",
    "with_block": "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a is defined }}",
    "generation_block": "{% generation %}gen {{ 1 }}{% endgeneration %}",
    "macro": "{% macro f(a, b='B', c=none) %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}"
             "{{ f(1) }}{{ f(2, b=3) }}{{ f(a=4) }}{{ f(5, 6, 7) }}",
    "macro_alias": "{% macro m(x) %}[{{ x }}]{% endmacro %}{% set g = m %}{{ g(1) }}"
                   "{% for h in [m] %}{{ h(2) }}{% endfor %}",
    "macro_recursive": "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}"
                       "{% endif %}{% endmacro %}{{ fact(5) }}",
    # Operators and Python value formatting.
    "arith": "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} "
             "{{ 7 / 2 }} {{ 1 + 2.5 }} {{ 10 / 5 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ -(3) }} "
             "{{ +4 }} {{ true + 1 }}",
    "floats": "{{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 123456789.125 }} {{ 0.1 + 0.2 }} {{ 1e-5 }} "
              "{{ 0.0001 }} {{ 1.5e-7 }} {{ 2.0 }} {{ -0.0 }} {{ 1 / 3 }} {{ 2.5e300 * 10 }}",
    "ints": "{{ 123456789012345678 }} {{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1.5e3 }}",
    "compare": "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }}"
               " {{ 'a' in 'abc' }} {{ 'z' not in ['a'] }} {{ 'k' in {'k': 1} }} {{ true == 1 }}"
               " {{ none == none }} {{ 2 >= 2.0 }} {{ 'b' <= 'a' }} {{ (1, 2) == [1, 2] }}",
    "logic_values": "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ none or none }}|"
                    "{{ not 0 }}|{{ not messages }}|{{ [] or {} }}",
    "cond_expr": "{{ 'y' if true else 'n' }}|{{ 'y' if false }}|{{ 'a' if none else 'b' if 1 "
                 "else 'c' }}",
    "concat": "{{ 'a' ~ 1 ~ none ~ 2.5 ~ true }} {{ 'a' 'b' }} {{ 'ab' * 3 }} {{ 2 * 'x' }} "
              "{{ [1] + [2] }} {{ [0] * 3 }} {{ undefined_name ~ 'x' }}",
    "repr": "{{ [1, 'a', none, true, 2.5, {'k': 'v'}] }} {{ ('a',) }} {{ (1, 2) }} "
            "{{ {'a': [1, 2]} }} {{ [\"it's\"] }} {{ ['a\"b', \"c'd\\\"e\"] }} {{ ['\\n\\t\\x01'] }}"
            " {{ ['é', '\\u00a0', '\\u200b'] }} {{ messages[0] }}",
    "string_escapes": "{{ '\\t|\\x41|\\u00e9|\\U0001F600|\\101|\\q|\\\\|\\'|\"' }}",
    # Attribute and item access.
    "access": "{{ messages[0]['role'] }} {{ messages[-1].content }} {{ messages[0].missing is "
              "defined }} {{ messages[9] is defined }} {{ messages.0.role }} {{ 'abc'[1] }} "
              "{{ {'a': 1}.a }} {{ {'a': {'b': 'c'}}['a']['b'] }} {{ none.x }}|{{ (1).x }}|",
    "slices": "{{ 'abcdef'[1:] }} {{ 'abcdef'[::-1] }} {{ 'abcdef'[-2:] }} {{ 'abcdef'[1:5:2] }} "
              "{{ 'héllo'[1] }} {{ messages[::2] | length }} {{ messages[1:3] | map(attribute="
              "'role') | join(',') }} {{ messages[:-1] | length }} {{ [1, 2, 3][5:] }} "
              "{{ [1, 2, 3, 4][::-2] }} {{ 'abc'[10:] }}|",
    # str and dict methods.
    "str_methods": "{{ 'a,b,,c'.split(',') }} {{ '  x y  '.split() }} {{ 'a b c'.split(none, 1) }}"
                   " {{ 'a-b-c'.rsplit('-', 1) }} {{ ' a b '.rsplit() }} {{ 'x'.upper() }} "
                   "{{ 'Hello World'.lower() }} {{ 'hello wORLD'.title() }} {{ 'hELLO'.capitalize() }}"
                   " {{ '  x  '.strip() }} {{ 'xxhixx'.strip('x') }} {{ '  x  '.lstrip() }}| "
                   "{{ '  x  '.rstrip() }}| {{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('c', 'd'"
                   ")) }} {{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'.replace('-', '', 1) }} "
                   "{{ 'abcabc'.find('c') }} {{ 'abcabc'.rfind('c') }} {{ 'abc'.find('z') }} "
                   "{{ 'aaa'.count('a') }} {{ ','.join(['a', 'b']) }} {{ 'a\\nb\\r\\nc'.splitlines() }}"
                   " {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ 'AB'.isupper() }} "
                   "{{ 'prefix_x'.removeprefix('prefix_') }} {{ 'x.txt'.removesuffix('.txt') }}",
    "unicode_methods": "{{ 'ß'.upper() }} {{ 'ǅ'.lower() }} {{ 'İ'.lower() | length }} "
                       "{{ 'ÉCOLE'.lower() }} {{ 'straße'.title() }} {{ '\\u3000x\\u3000'.strip() }}|"
                       "{{ '\\x1cx\\x1f'.strip() }}|{{ '\\u200bx'.strip() }}|{{ 'a\\u3000b'.split() }} "
                       "{{ 'ΟΔΟΣ ΣΑΣ Σ ΑΣ. Α\\u0301Σ\\u0301Β'.lower() }} {{ 'ΟΔΟΣ ΣΑΣ'.title() }} "
                       "{{ 'ΣΑΣ'.capitalize() }} {{ 'ΑΣ' | lower }} {{ 'ǆ'.title() }} {{ 'ǅ'.upper() }}",
    "dict_methods": "{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 'd') }} {{ {'a': 1}.get('b') }}"
                    " {{ {'x': 1, 'y': 2}.keys() | list }} {{ {'x': 1}.values() | list }} "
                    "{{ {'x': 1}.items() | list }} {{ dict(a=1, b='2') }}",
    # Tests.
    "tests": "{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ 1 is number }} "
             "{{ true is number }} {{ 1.5 is float }} {{ 3 is odd }} {{ 4 is even }} "
             "{{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ [] is iterable }} "
             "{{ {} is mapping }} {{ true is boolean }} {{ false is false }} {{ 0 is false }} "
             "{{ 1 is integer }} {{ true is integer }} {{ 'A' is upper }} {{ 'a' is lower }} "
             "{{ 2 is in [1, 2] }} {{ 1 is eq 1 }} {{ 1 is ne 2 }} {{ 1 is lt 2 }} {{ 2 is ge 3 }} "
             "{{ none is not none }} {{ messages is sequence }} {{ range is callable }} "
             "{{ x is undefined }} {{ 'trim' is filter }} {{ 'odd' is test }} {{ 1 is sameas 1 }}",
    # Filters.
    "filters_text": "{{ ' x ' | trim }}|{{ 'xax' | trim('x') }}|{{ 'abc' | upper }} "
                    "{{ 'ABC' | lower }} {{ 'ab cd' | title }} {{ 'aB' | capitalize }} "
                    "{{ 'a-b' | replace('-', '+') }} {{ 'hello' | reverse }} {{ 'a<b>&\"\\'' | e }}"
                    " {{ 'a<b>' | escape }} {{ 'hello world foo' | truncate(9) }} "
                    "{{ 'hello world foo bar' | truncate(11, true) }} {{ 'hello world' | wordcount }}"
                    " [{{ 'x' | center(5) }}] {{ 42 | string }} {{ 'safe' | safe }}",
    "filters_indent": "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|"
                      "{{ 'a\\n\\nb' | indent(width=3, blank=true) }}|{{ 'x\\ny' | indent('> ') }}",
    "filters_numbers": "{{ '42' | int + 1 }} {{ '4.5' | float }} {{ '4.7' | int }} {{ 'x' | int }} "
                       "{{ 'x' | int(7) }} {{ 3.9 | int }} {{ -3 | abs }} {{ -2.5 | abs }} "
                       "{{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }}"
                       " {{ 2.1 | round(method='ceil') }} {{ 2.9 | round(0, 'floor') }} {{ 7 | round }}"
                       " {{ [1, 2, 3] | sum }} {{ [0.5, 1] | sum }} {{ [{'n': 2}, {'n': 3}] | sum("
                       "attribute='n') }} {{ '0x1A' | int(0, 16) }}",
    "filters_seq": "{{ messages | length }} {{ 'héllo' | length }} {{ {'a': 1} | count }} "
                   "{{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) | join(',') }} "
                   "{{ ['b', 'A', 'a'] | sort }} {{ ['b', 'A', 'a'] | sort(case_sensitive=true) }} "
                   "{{ ['a', 'b'] | join('-') }} {{ [1, 2] | join }} {{ [1, 2, 3] | first }} "
                   "{{ [1, 2, 3] | last }} {{ [] | first is defined }} {{ 'abc' | first }} "
                   "{{ [1, 1, 2, 'A', 'a'] | unique | list }} {{ [1, 5, 3] | max }} "
                   "{{ [1, 5, 3] | min }} {{ ['B', 'a'] | max }} {{ [1, 2] | reverse | list }} "
                   "{{ 'ab' | list }} {{ {'b': 1, 'a': 2} | dictsort }} "
                   "{{ {'b': 1, 'a': 2} | dictsort(by='value', reverse=true) }} "
                   "{{ {'a': 1} | items | list }} {{ [1, 2, 3, 4] | select('odd') | list }} "
                   "{{ [1, 2, 3, 4] | reject('odd') | list }} {{ [0, 1, '', 'x'] | select | list }} "
                   "{{ ['a', 'b'] | map('upper') | list }}",
    "filters_attr": "{{ messages | map(attribute='role') | list }} "
                    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }} "
                    "{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='content') | "
                    "join('|') }} {{ messages | map(attribute='nope', default='?') | join }} "
                    "{{ messages | sort(attribute='role') | map(attribute='role') | join(',') }} "
                    "{{ messages | selectattr('content') | list | length }} "
                    "{{ messages | join(', ', attribute='role') }} "
                    "{{ [{'a': {'b': 1}}, {'a': {'b': 2}}] | map(attribute='a.b') | list }} "
                    "{{ messages[0] | attr('role') }} {{ messages | unique(attribute='role') | "
                    "map(attribute='content') | list }}",
    "filters_default": "{{ undefined_var | default('dflt') }} {{ '' | default('x', true) }} "
                       "{{ '' | d('y') }}| {{ none | default('n') }} {{ false | default('f', "
                       "boolean=true) }}",
    "tojson": "{{ messages | tojson }}\n{{ {'a': 1, 'b': [1.0, 2.5e-7, none, true], 'c': 'é\"\\n<>&'}"
              " | tojson }}\n{{ {'a': 1, 'z': {'y': [1, {}]}} | tojson(indent=2) }}\n"
              "{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}\n{{ 'é\\u2028\\x7f' | tojson("
              "ensure_ascii=true) }}\n{{ [] | tojson(indent=2) }}{{ {} | tojson }}\n"
              "{{ [1, 2] | tojson(separators=(',', ':')) }} {{ 1e100 | tojson }} "
              "{{ 'x' | tojson(indent=0) }} {{ [1] | tojson(indent=0) }} {{ (1, 2) | tojson }}",
    "globals": "{{ strftime_now('%Y') | length }} {{ namespace(a=1).a }} "
               "{{ namespace({'b': 2}).b }}",
    "undefined_behaviour": "[{{ nope }}][{{ nope | length }}][{{ nope | trim }}]"
                           "[{% for x in nope %}x{% endfor %}][{{ nope is defined }}]"
                           "[{{ 'a' in nope }}][{{ nope == nope }}][{{ not nope }}]",
    "realistic": (
        "{%- if messages[0]['role'] == 'system' %}\n"
        "    {%- set system_message = messages[0]['content'] | trim %}\n"
        "    {%- set loop_messages = messages[1:] %}\n"
        "{%- else %}\n"
        "    {%- set system_message = '' %}\n"
        "    {%- set loop_messages = messages %}\n"
        "{%- endif %}\n"
        "{{- bos_token | default('<s>') }}\n"
        "{%- for message in loop_messages %}\n"
        "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n"
        "        {{- raise_exception('Conversation roles must alternate user/assistant/user/"
        "assistant/...') }}\n"
        "    {%- endif %}\n"
        "    {%- if message['role'] == 'user' %}\n"
        "        {%- if loop.first and system_message != '' %}\n"
        "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] | trim + "
        "' [/INST]' }}\n"
        "        {%- else %}\n"
        "            {{- ' [INST] ' + message['content'] | trim + ' [/INST]' }}\n"
        "        {%- endif %}\n"
        "    {%- elif message['role'] == 'assistant' %}\n"
        "        {{- ' ' + message['content'] | trim + eos_token | default('</s>') }}\n"
        "    {%- endif %}\n"
        "{%- endfor %}\n"
    ),
}

# Templates that must fail to render in both engines (compare.py checks only that both fail).
FAILING = {
    "err_raise": "{{ raise_exception('custom failure') }}",
    "err_type": "{{ 'a' + 1 }}",
    "err_undefined_attr": "{{ nope.attr }}",
    "err_none_iter": "{% for x in none %}{% endfor %}",
    "err_unpack": "{% set a, b = [1, 2, 3] %}",
    "err_div_zero": "{{ 1 // 0 }}",
    "err_roles": TEMPLATES["realistic"],  # rendered below with non-alternating roles
}


def cases():
    out = []
    for name, tmpl in TEMPLATES.items():
        for gen in (True, False) if name == "realistic" else (False,):
            out.append({"name": name, "template": tmpl, "messages": MESSAGES,
                        "add_generation_prompt": gen, "extra": {"eos_token": "</s>"}})
    for name, tmpl in FAILING.items():
        messages = MESSAGES if name != "err_roles" else [MESSAGES[1], MESSAGES[1]]
        out.append({"name": name, "template": tmpl, "messages": messages,
                    "add_generation_prompt": False, "expect_error": True})
    return out
