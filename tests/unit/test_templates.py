import pytest

from farm.errors import InvalidInput
from farm.templates.service import expand, template_variables


def test_expand_fills_variables():
    assert expand("{{ product }} on {{ background }}", {"product": "a red shoe", "background": "sand"}) \
        == "a red shoe on sand"


def test_template_variables_lists_what_a_row_must_give():
    assert template_variables("{{ product }} on {{ background }}") == {"product", "background"}


def test_missing_variable_names_it():
    with pytest.raises(InvalidInput) as caught:
        expand("{{ product }} on {{ background }}", {"product": "shoe"})
    assert caught.value.field == "variables.background"


def test_syntax_error_names_the_field():
    with pytest.raises(InvalidInput) as caught:
        expand("{{ product ", {"product": "x"}, field="prompt")
    assert caught.value.field == "prompt"
    assert "syntax" in caught.value.message


def test_sandbox_blocks_reaching_python_internals():
    with pytest.raises(InvalidInput):
        expand("{{ product.__class__.__mro__[1].__subclasses__() }}", {"product": "x"})
