import pytest

from ablate.common.registry import DuplicateName, Registry


def test_register_get_and_natural_order():
    reg = Registry("thing")
    for name in ("resnet101", "resnet18", "resnet34"):
        reg.register(name, token=name[-2:])(lambda: None)
    assert reg.names() == ["resnet18", "resnet34", "resnet101"]
    assert reg.names("resnet1*") == ["resnet18", "resnet101"]
    assert reg.meta("resnet34") == {"token": "34"}
    assert "resnet18" in reg and "vgg" not in reg


def test_unknown_name_lists_what_exists():
    reg = Registry("dataset")
    reg.register("shapes")(lambda: None)
    with pytest.raises(ValueError, match=r"unknown dataset 'voc'; allowed: shapes"):
        reg.get("voc")


def test_duplicate_name_raises():
    reg = Registry("loss")
    reg.register("dice")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("dice")(lambda: None)
    with pytest.raises(DuplicateName) as err:  # which registry and name, for plugin errors
        reg.register("dice")(lambda: None)
    assert (err.value.kind, err.value.name) == ("loss", "dice")


def test_help_is_first_docstring_line():
    reg = Registry("block")

    @reg.register("conv")
    def conv():
        """Two convolutions.

        More text."""

    assert reg.help("conv") == "Two convolutions"
    assert "conv" in repr(reg)


def test_a_unique_meta_value_is_refused_twice_naming_both_entries():
    reg = Registry("block", unique=("token",))
    reg.register("conv", token="cv")(object())
    reg.register("plain", token="")(object())
    reg.register("bare", token="")(object())  # an empty token (a default's) may repeat
    with pytest.raises(DuplicateName, match="block 'res': token 'cv' is already used by block "
                                            "'conv'"):
        reg.register("res", token="cv")(object())
    assert "res" not in reg
