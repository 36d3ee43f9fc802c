import pydantic
import pytest
from pydantic import BaseModel, Field, field_validator

from tessera.config.validation import describe_validation_error, error_path


class Inner(BaseModel):
    framerate: int = Field(le=60)


class Outer(BaseModel):
    views: list[Inner]
    label: str = "x"

    @field_validator("label")
    @classmethod
    def _check(cls, value: str) -> str:
        if value == "bad":
            raise ValueError("label is bad")
        return value


def _error(data: object) -> pydantic.ValidationError:
    with pytest.raises(pydantic.ValidationError) as info:
        Outer.model_validate(data)
    return info.value


def test_error_path_joins_locations() -> None:
    assert error_path(("views", 0, "video")) == "views.0.video"
    assert error_path(()) == ""


def test_describe_gives_path_and_reason() -> None:
    message = describe_validation_error(_error({"views": [{"framerate": 70}]}))
    assert message == "views.0.framerate: Input should be less than or equal to 60"


def test_describe_strips_value_error_prefix() -> None:
    message = describe_validation_error(_error({"views": [], "label": "bad"}))
    assert message == "label: label is bad"


def test_describe_joins_several_errors_and_caps_them() -> None:
    many = {"views": [{"framerate": 100 + i} for i in range(8)]}
    message = describe_validation_error(_error(many))
    assert message.count("Input should be less than or equal to 60") == 5
    assert message.endswith("and 3 more errors")


def test_describe_top_level_error_has_no_path() -> None:
    message = describe_validation_error(_error("not an object"))
    assert message.startswith("Input should be")
