"""Renders the chat templates in fixtures/chat-templates/ with transformers' apply_chat_template
and writes fixtures/chat-templates/cases.json: each conversation, the template variables given,
and the string transformers produced, which tests/chat_templates.rs expects lethe to produce.

Run with scripts/render-chat-templates.sh (it installs the pinned transformers it needs)."""

import json
import pathlib

import transformers
from transformers import PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIR = ROOT / "fixtures" / "chat-templates"

# The special tokens each family's tokenizer declares (transformers passes them to the template).
FAMILIES = {
    "smollm2.jinja": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "qwen3.jinja": {"eos_token": "<|im_end|>"},
    "llama-3.2.jinja": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
}

CONVERSATIONS = {
    "one question": [{"role": "user", "content": "Where was Mira Kessel born?"}],
    "system and turns": [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "Where was Mira Kessel born?"},
        {"role": "assistant", "content": "Mira Kessel was born in Tarnholm."},
        {"role": "user", "content": "And her brother?"},
    ],
    "padded text": [
        {"role": "system", "content": "  Be brief.\n"},
        {"role": "user", "content": "\n  What is  \"lethe\"?  \n"},
        {"role": "assistant", "content": "  A river — of forgetting.  "},
    ],
    "reasoning in the answer": [
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\nFour."},
        {"role": "user", "content": "3 + 3?"},
        {"role": "assistant", "content": "<think>\nAgain.\n</think>\n\nSix."},
    ],
    "a tool response as the last user turn": [
        {"role": "user", "content": "What is the weather?"},
        {"role": "assistant", "content": "Let me look."},
        {"role": "user", "content": "<tool_response>sunny</tool_response>"},
    ],
}

# Keyword arguments of apply_chat_template that the templates read. Llama 3.2 reads today's
# date unless date_string is given; the committed strings pin it.
EXTRA = {
    "qwen3.jinja": [{}, {"enable_thinking": False}],
    "llama-3.2.jinja": [{"date_string": "26 Jul 2024"}],
    "smollm2.jinja": [{}],
}


def main():
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(ROOT / "fixtures" / "text" / "tiny-chat" / "tokenizer.json")
    )
    cases = []
    for template_file, special in FAMILIES.items():
        template = (DIR / template_file).read_text()
        for name, messages in CONVERSATIONS.items():
            for add_generation_prompt in (True, False):
                for extra in EXTRA[template_file]:
                    # apply_chat_template passes the tokenizer's special tokens map, which
                    # keyword arguments override.
                    tokenizer.bos_token = special.get("bos_token")
                    tokenizer.eos_token = special.get("eos_token")
                    rendered = tokenizer.apply_chat_template(
                        messages,
                        chat_template=template,
                        tokenize=False,
                        add_generation_prompt=add_generation_prompt,
                        **extra,
                    )
                    cases.append(
                        {
                            "template": template_file,
                            "conversation": name,
                            "messages": messages,
                            "add_generation_prompt": add_generation_prompt,
                            "bos_token": special.get("bos_token"),
                            "eos_token": special.get("eos_token"),
                            "extra": extra,
                            "expected": rendered,
                        }
                    )
    out = {
        "rendered_by": f"transformers {transformers.__version__} apply_chat_template",
        "cases": cases,
    }
    (DIR / "cases.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases in {DIR / 'cases.json'}")


if __name__ == "__main__":
    main()
