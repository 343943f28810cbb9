"""The one scrubber: secret values of the environment and token shapes never survive it."""

from __future__ import annotations

import json
import logging

from shared.scrub import REDACTED, ScrubFilter, is_secret_name, scrub, secret_values

ENV = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-FAKEfakeFAKEfake0123456789",
    "GITHUB_PAT": "plainpatvalue123",
    "PGPASSWORD": "pg-pass-0987",
    "DATABASE_URL": "postgresql://app:db%2Fpass%40word@db:5432/app",
    "DEPLOY_TOKEN": "deploy-token-value",
    "SHORT_KEY": "abc",  # too short to be told from a setting: left alone
    "PATH": "/usr/bin:/bin",
    "YOKEFLOW_PARALLEL__MAX_CONCURRENCY": "3",
}


def test_secret_names():
    for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD", "GITHUB_PAT",
                 "DB_PASSWORD", "SSH_KEY", "yokeflow_api_token"):
        assert is_secret_name(name), name
    for name in ("PATH", "HOME", "LANG", "YOKEFLOW_PORT_BASE", "KEYBOARD", "TOKENIZERS_PARALLELISM", "PWD", "OLDPWD"):
        assert not is_secret_name(name), name


def test_values_of_secret_variables_and_url_passwords_are_removed():
    text = "env: " + " ".join(f"{k}={v}" for k, v in ENV.items()) + " and db%2Fpass%40word, db/pass@word"
    clean = scrub(text, ENV)
    for value in ("sk-ant-api03-FAKEfakeFAKEfake0123456789", "plainpatvalue123", "pg-pass-0987", "db/pass@word",
                  "db%2Fpass%40word", "deploy-token-value"):
        assert value not in clean, value
    assert "PATH=/usr/bin:/bin" in clean and "MAX_CONCURRENCY=3" in clean and "SHORT_KEY=abc" in clean


def test_token_shapes_are_removed_whoever_they_belong_to():
    samples = ["sk-ant-api03-abcdefghijklmnop", "ghp_" + "a1" * 18, "github_pat_" + "B2_" * 10,
               "AKIAIOSFODNN7EXAMPLE", "Authorization: Bearer abcdef0123456789xyz",
               "https://user:hunter2hunter2@example.com/x", "xoxb-1234567890-abcdef"]
    for sample in samples:
        clean = scrub(f"before {sample} after", {})
        assert REDACTED in clean and clean.startswith("before ") and clean.endswith(" after"), clean
    assert "hunter2hunter2" not in scrub("https://user:hunter2hunter2@example.com/x", {})
    assert scrub("https://user:hunter2hunter2@example.com/x", {}).startswith("https://user:")


def test_ordinary_text_is_left_alone():
    text = ("merged task/12-add-login into main at 3f2a9c1 (input_tokens: 1200, max_tokens=4096); "
            "see https://example.com/docs and the token budget")
    assert scrub(text, ENV) == text


def test_every_secret_assignment_name_is_found_and_a_plain_key_field_is_not_one():
    for name in ("MY_API_KEY", "my_apikey", "PRIVATE_KEY", "GITHUB_TOKEN", "db_secret", "PGPASSWORD", "smtp_passwd",
                 "GITHUB_PAT"):
        for form in (f"{name}=s3cr3tvalue", f'"{name}": "s3cr3tvalue"', f"{name}: s3cr3tvalue", f"{name} = s3cr3tvalue",
                     f"{name}\t:\ts3cr3tvalue", f"'{name}':'s3cr3tvalue'", f'\\"{name}\\": \\"s3cr3tvalue'):
            assert scrub(f"env {form} end", {}) == f"env {form.replace('s3cr3tvalue', REDACTED)} end", form
    doc = json.dumps({"entries": [{"key": f"src/module_{i}.py", "files": [f"src/module_{i}.py"]} for i in range(500)]})
    assert scrub(doc, {}) == doc


def test_encoded_json_stays_valid_json():
    env = {"MY_SECRET": 'quote"and\\slash-secret'}
    doc = json.dumps({"output": f"value={env['MY_SECRET']}", "n": 1})
    clean = scrub(doc, env)
    assert json.loads(clean)["output"] == f"value={REDACTED}"


def test_secret_values_reads_urls_in_any_variable():
    values = secret_values({"YOKEFLOW_NATS_URL": "nats://svc:natspw123456@127.0.0.1:4222", "X": "1"})
    assert "natspw123456" in values


def test_log_filter_scrubs_message_arguments_and_traceback(monkeypatch):
    monkeypatch.setenv("SERVICE_TOKEN", "tok-value-in-env")
    try:
        raise RuntimeError("failed with tok-value-in-env")
    except RuntimeError:
        import sys
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "calling %s", ("tok-value-in-env",), sys.exc_info())
    assert ScrubFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "tok-value-in-env" not in formatted and REDACTED in formatted and "RuntimeError" in formatted


def test_a_secret_set_in_the_environment_later_is_scrubbed_too(monkeypatch):
    assert scrub("value later-secret-123 here") == "value later-secret-123 here"  # the environment, as it was
    monkeypatch.setenv("LATER_API_KEY", "later-secret-123")
    assert scrub("value later-secret-123 here") == f"value {REDACTED} here"
    monkeypatch.delenv("LATER_API_KEY")
    assert scrub("value later-secret-123 here") == "value later-secret-123 here"


def test_a_secret_whose_value_changes_is_scrubbed_by_its_new_value(monkeypatch):
    monkeypatch.setenv("ROTATED_TOKEN", "first-value-123")
    assert scrub("first-value-123") == REDACTED
    monkeypatch.setenv("ROTATED_TOKEN", "second-value-456")  # same variable, same number of variables
    assert scrub("first-value-123 second-value-456") == f"first-value-123 {REDACTED}"
