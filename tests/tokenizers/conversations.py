"""Conversations the three real chat templates are rendered with (compare.py `chat`).

Each case is rendered by the C++ engine, python3-jinja2 (render_jinja2.py) and @huggingface/jinja;
the C++ text must equal Python's byte for byte. The cases cover what the DeepSeek-V3, Llama 3 and
Qwen 3 templates branch on: system prompts (none, one, two), single and multi-turn, generation
prompt on and off, a final assistant turn, tool calls and tool results (arguments as JSON text
and as objects: Qwen's tojson), reasoning in <think> or reasoning_content (Qwen 3),
enable_thinking, and message text that stresses whitespace handling (Llama's trim strips
Unicode white space such as U+3000 and U+001C), escapes, Jinja-looking text and special tokens.
"""

SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! What is Engram?"}
A1 = {"role": "assistant", "content": "Engram is a conditional memory: hashed n-gram tables."}
U2 = {"role": "user", "content": "How big can the tables get?"}
A2 = {"role": "assistant", "content": "100B parameters and more, in host RAM or on SSD."}
U3 = {"role": "user", "content": "Thanks."}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city — «quoted», \"escaped\", 中文",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}
CALL_ARGS_STR = '{"city": "Paris", "unit": "celsius"}'
CALL_ARGS_OBJ = {"city": "Zürich", "days": 3, "ratio": 0.1, "big": 1e20, "flag": True,
                 "none": None, "list": [1, 2.5, "x"]}


def tool_call(args, with_function_wrapper=True, call_id="call_1"):
    fn = {"name": "get_weather", "arguments": args}
    if with_function_wrapper:
        return {"id": call_id, "type": "function", "function": fn}
    return {"id": call_id, "type": "function", **fn}


def cases():
    plain = [
        ("single user", [U1]),
        ("system + user", [SYS, U1]),
        ("multi-turn with system", [SYS, U1, A1, U2, A2, U3]),
        ("multi-turn without system", [U1, A1, U2, A2, U3]),
        ("ends with assistant", [SYS, U1, A1]),
        ("two system messages", [SYS, {"role": "system", "content": "Answer in French."}, U1]),
        ("system only", [SYS]),
        ("empty contents", [{"role": "user", "content": ""}, {"role": "assistant", "content": ""},
                            {"role": "user", "content": ""}]),
        ("whitespace at the edges", [
            {"role": "system", "content": "  \n\tspaced system\n\n  "},
            {"role": "user", "content": "\u3000ideographic space\u3000"},
            {"role": "assistant", "content": "\x1c\x1dinformation separators\x1e\x1f"},
            {"role": "user", "content": "\u00a0nbsp and \u200bzero width\u200b"},
            {"role": "assistant", "content": "\r\nwindows\r\nnewlines\r\n"},
        ]),
        ("unicode and escapes", [
            {"role": "user", "content": "Ünïcödé 中文 日本語 العربية 👨‍👩‍👧 e\u0301 \\n not a newline"},
            {"role": "assistant", "content": "quotes ' \" ` and backslash \\ and tab\tend"},
            {"role": "user", "content": "{{ not a variable }} {% if x %} {# no comment #}"},
        ]),
        ("special tokens in content", [
            {"role": "user", "content": "<|im_start|>user<|im_end|> <|eot_id|> "
                                        "<｜end▁of▁sentence｜> <think>x</think>"},
        ]),
        ("long conversation", [SYS] + [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "x" * i}
            for i in range(12)
        ]),
        ("unknown role", [{"role": "developer", "content": "Be terse."}, U1]),
    ]
    out = []
    for name, messages in plain:
        for gen in (True, False):
            out.append({"name": f"{name}, add_generation_prompt={gen}", "messages": messages,
                        "add_generation_prompt": gen})

    # Reasoning (Qwen 3 splits <think> out of earlier assistant turns; others print it as is).
    think = {"role": "assistant", "content": "<think>\nLet me think.\n</think>\n\nThe answer."}
    reasoning_field = {"role": "assistant", "content": "Answer B.",
                       "reasoning_content": "\nSome reasoning.\n"}
    out += [
        {"name": "think in content", "messages": [U1, think, U2], "add_generation_prompt": True},
        {"name": "think last", "messages": [U1, think], "add_generation_prompt": False},
        {"name": "reasoning_content", "messages": [U1, reasoning_field, U2, reasoning_field],
         "add_generation_prompt": False},
        {"name": "enable_thinking=false", "messages": [SYS, U1], "add_generation_prompt": True,
         "extra": {"enable_thinking": False}},
        {"name": "enable_thinking=true", "messages": [U1], "add_generation_prompt": True,
         "extra": {"enable_thinking": True}},
    ]

    # Tools: DeepSeek-V3 wants content None with tool_calls and arguments as text; Qwen 3 takes
    # either form and prints tool schemas with tojson; Llama 3's template prints roles as given.
    ds_call = {"role": "assistant", "content": None,
               "tool_calls": [tool_call(CALL_ARGS_STR), tool_call(CALL_ARGS_STR, call_id="c2")]}
    tool_result = {"role": "tool", "content": '{"temperature": 21, "sky": "clear"}'}
    tool_result2 = {"role": "tool", "content": "second result"}
    out += [
        {"name": "deepseek-style tool calls", "messages": [SYS, U1, ds_call, tool_result,
                                                           tool_result2, A1],
         "add_generation_prompt": False, "for": ["deepseek_v3"]},
        {"name": "tool result then generation prompt", "messages": [U1, ds_call, tool_result],
         "add_generation_prompt": True, "for": ["deepseek_v3"]},
        {"name": "qwen tools + object arguments", "messages": [
            SYS, U1,
            {"role": "assistant", "content": "Checking.",
             "tool_calls": [tool_call(CALL_ARGS_OBJ), tool_call(CALL_ARGS_STR, False)]},
            tool_result, tool_result2, A1, U2],
         "add_generation_prompt": True, "extra": {"tools": [WEATHER_TOOL]}},
        {"name": "qwen tools without system", "messages": [U1], "add_generation_prompt": True,
         "extra": {"tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "noop"}}]}},
        {"name": "tool role, plain text", "messages": [U1, A1, tool_result, U2],
         "add_generation_prompt": True},
    ]

    # Errors both engines must report (content None without tool_calls).
    out += [
        {"name": "user content None (error)", "messages": [{"role": "user", "content": None}],
         "add_generation_prompt": True, "for": ["deepseek_v3"], "expect_error": True},
    ]
    return out


def cases_for(tokenizer):
    return [c for c in cases() if tokenizer in c.get("for", [tokenizer])]
