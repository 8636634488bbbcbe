"""Device catalogue and hls4ml-style HLS configuration."""

from __future__ import annotations

import itertools

import pytest

from tenfold.errors import ConfigError
from tenfold.hardware.devices import Device, get_device, list_devices, register_device
from tenfold.hardware.hls_config import (
    HLSConfig,
    IOType,
    LayerConfig,
    Strategy,
    check_reuse_factor,
    is_valid_reuse_factor,
    valid_reuse_factors,
)


def test_catalogue_has_required_parts_with_datasheet_figures():
    for name in ("xc7z020", "xczu9eg", "xcvu9p", "xcvu13p", "xcu250"):
        assert name in list_devices()
    vu13p = get_device("xcvu13p-flga2577-2-e")  # hls4ml's default part string
    assert (vu13p.dsp, vu13p.bram18, vu13p.lut, vu13p.ff, vu13p.uram) == (12288, 5376, 1728000, 3456000, 1280)
    assert get_device("Pynq-Z2").dsp_type == "DSP48E1"
    assert get_device("zcu102").name == "xczu9eg"
    assert get_device("u250").dsp == 12288


def test_unknown_device_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        get_device("xc9000")
    assert "xcvu13p" in str(info.value) and "register_device" in str(info.value)


def test_user_device_registration():
    mine = register_device(Device("mypart", dsp=10, bram18=4, lut=1000, ff=2000), replace=True)
    assert get_device("MYPART") is mine
    with pytest.raises(ConfigError, match="already registered"):
        register_device(Device("mypart", dsp=1, bram18=1, lut=1, ff=1))
    with pytest.raises(ConfigError, match="dsp"):
        register_device(Device("broken", dsp=-1, bram18=1, lut=1, ff=1))


def test_reuse_factor_rule_matches_hls4ml():
    fpga_backend = pytest.importorskip("hls4ml.backends.fpga.fpga_backend")
    backend = fpga_backend.FPGABackend.__new__(fpga_backend.FPGABackend)  # the rule needs no backend state
    for n_in, n_out in itertools.product((1, 3, 16, 27, 48, 64), (1, 5, 16, 32)):
        for rf in range(1, n_in * n_out + 1):
            expected = bool(backend._validate_reuse_factor(n_in, n_out, rf))
            assert is_valid_reuse_factor(rf, n_in, n_out) == expected, (n_in, n_out, rf)
        assert valid_reuse_factors(n_in, n_out) == backend.get_valid_reuse_factors(n_in, n_out)


def test_invalid_reuse_factor_names_layer_and_nearest_values():
    assert check_reuse_factor(4, 16, 64) == 4
    with pytest.raises(ConfigError) as info:
        check_reuse_factor(5, 16, 64, layer="fc1")
    message = str(info.value)
    assert "fc1" in message and "4 or 8" in message


def test_strategy_and_iotype_parsing():
    assert Strategy.parse("resource") is Strategy.RESOURCE
    assert Strategy.parse("Resource_Unrolled") is Strategy.RESOURCE_UNROLLED
    assert IOType.parse("stream") is IOType.IO_STREAM
    with pytest.raises(ConfigError, match="Strategy"):
        Strategy.parse("fastest")
    with pytest.raises(ConfigError, match="ReuseFactor"):
        LayerConfig(reuse_factor=0)


def test_hls4ml_config_round_trip():
    source = {
        "Model": {"Precision": "fixed<16,6>", "ReuseFactor": 4, "Strategy": "Resource"},
        "LayerName": {
            "fc1": {"Precision": {"weight": "fixed<8,3>", "result": "fixed<12,4>"}, "ReuseFactor": 16},
            "fc2": {"Strategy": "Latency"},
        },
    }
    config = HLSConfig.from_hls4ml(source)
    assert config.default.reuse_factor == 4 and config.default.strategy is Strategy.RESOURCE
    fc1 = config.layer("fc1")
    assert fc1.reuse_factor == 16 and fc1.precision.weight.width == 8 and fc1.precision.result.integer == 4
    assert fc1.precision.bias.width == 16 and fc1.strategy is Strategy.RESOURCE  # inherited
    assert config.layer("fc2").strategy is Strategy.LATENCY and config.layer("other").reuse_factor == 4
    again = HLSConfig.from_hls4ml(config.to_hls4ml())
    assert again.to_hls4ml() == config.to_hls4ml()
    with pytest.raises(ConfigError, match="unknown layer option"):
        HLSConfig.from_hls4ml({"Model": {"ReuseFactr": 2}})
    with pytest.raises(ConfigError, match="precision"):
        HLSConfig.from_hls4ml({"Model": {"Precision": "fixed<16"}})


def test_accepts_the_config_hls4ml_itself_generates():
    hls4ml = pytest.importorskip("hls4ml")
    from tenfold.models import create

    generated = hls4ml.utils.config_from_pytorch_model(create("jet_mlp"), (16,), granularity="name",
                                                       default_precision="ap_fixed<18,8>", default_reuse_factor=4)
    config = HLSConfig.from_hls4ml(generated)
    assert config.default.reuse_factor == 4 and config.layer("fc1").precision.weight.width == 18
    assert config.layer("fc1").precision.result.integer == 8  # 'auto' keeps the model default
