"""I2C config fragment: chip settings, quantities and addresses checked per chip, located."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgetwin.config import load_config_text
from edgetwin.config.i2c import I2cDeviceConfig
from edgetwin.errors import ConfigError, ConfigProblem

HEAD = """\
[gateway]
id = "edge-01"

[[buses]]
kind = "i2c"
name = "i2c1"
bus = 1
"""

ALL_CHIPS = (
    HEAD
    + """
[[devices]]
name = "climate"
bus = "i2c1"
driver = "i2c"
chip = "bme280"
address = 0x76
oversampling = { temperature = 2, pressure = 16 }

  [[devices.points]]
  name = "temperature"

  [[devices.points]]
  name = "pressure_hpa"
  quantity = "pressure"
  scale = 0.01

[[devices]]
name = "cabinet"
bus = "i2c1"
driver = "i2c"
chip = "sht3x"
address = 0x45
repeatability = "medium"

  [[devices.points]]
  name = "humidity"

[[devices]]
name = "adc"
bus = "i2c1"
driver = "i2c"
chip = "ads1115"
address = 0x48
fsr = 4.096
data_rate = 250

  [[devices.points]]
  name = "tank_level"
  channel = "ain0"

  [[devices.points]]
  name = "bridge"
  channel = "ain2-ain3"
  fsr = 0.256

[[devices]]
name = "supply"
bus = "i2c1"
driver = "i2c"
chip = "ina219"
address = 0x41
shunt_ohms = 0.1
max_expected_amps = 2.0
bus_voltage_range = 16

  [[devices.points]]
  name = "current"

  [[devices.points]]
  name = "power"
"""
)


def problems(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="i2c.toml")
    return info.value.problems


def one_device(body: str) -> str:
    return HEAD + '\n[[devices]]\nname = "d"\nbus = "i2c1"\ndriver = "i2c"\n' + body


def test_every_chip_loads_with_its_settings() -> None:
    cfg = load_config_text(ALL_CHIPS, filename="i2c.toml")
    climate, cabinet, adc, supply = cfg.devices
    assert isinstance(climate, I2cDeviceConfig)
    assert isinstance(adc, I2cDeviceConfig)
    assert climate.oversampling is not None
    assert (climate.oversampling.temperature, climate.oversampling.pressure) == (2, 16)
    assert climate.oversampling.humidity == 1
    assert [climate.quantity(i) for i in range(2)] == ["temperature", "pressure"]
    assert [adc.quantity(i) for i in range(2)] == ["voltage", "voltage"]
    assert [adc.point_fsr(i) for i in range(2)] == [4.096, 0.256]
    assert isinstance(cabinet, I2cDeviceConfig)
    assert cabinet.repeatability == "medium"
    assert isinstance(supply, I2cDeviceConfig)
    assert (supply.shunt_ohms, supply.bus_voltage_range) == (0.1, 16)


def test_an_address_the_chip_cannot_have_is_reported_at_the_key() -> None:
    text = one_device('chip = "sht3x"\naddress = 0x40\n[[devices.points]]\nname = "humidity"\n')
    (problem,) = problems(text)
    assert problem.path == "devices[0].address"
    assert problem.line == text.splitlines().index("address = 0x40") + 1
    assert "0x40 does not fit chip 'sht3x', which answers at 0x44 or 0x45" in problem.message


def test_a_setting_of_another_chip_is_reported_at_the_key() -> None:
    text = one_device(
        'chip = "bme280"\naddress = 0x76\nshunt_ohms = 0.1\n[[devices.points]]\nname = "pressure"\n'
    )
    (problem,) = problems(text)
    assert problem.path == "devices[0].shunt_ohms"
    assert "applies to chip 'ina219' only; this device is a 'bme280'" in problem.message


def test_a_quantity_the_chip_lacks_lists_the_valid_ones() -> None:
    text = one_device('chip = "bme280"\naddress = 0x77\n[[devices.points]]\nname = "temp"\n')
    (problem,) = problems(text)
    assert problem.path == "devices[0]"
    assert "does not measure 'temp'" in problem.message
    assert "'temperature', 'pressure' or 'humidity'" in problem.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'chip = "ads1115"\naddress = 0x48\n[[devices.points]]\nname = "v"\n',
            "an ads1115 point needs a channel",
        ),
        (
            'chip = "sht3x"\naddress = 0x44\n[[devices.points]]\nname = "humidity"\n'
            'channel = "ain0"\n',
            "channel applies to chip 'ads1115' only",
        ),
        (
            'chip = "ina219"\naddress = 0x40\n[[devices.points]]\nname = "current"\n',
            "needs shunt_ohms",
        ),
        (
            'chip = "ina219"\naddress = 0x40\nshunt_ohms = 0.1\nmax_expected_amps = 5.0\n'
            '[[devices.points]]\nname = "current"\n',
            "500 mV, beyond the INA219's 320 mV shunt range",
        ),
        (
            'chip = "ina219"\naddress = 0x40\nshunt_ohms = 0.1\nmax_expected_amps = 1.0\n'
            '[[devices.points]]\nname = "voltage"\n',
            "'shunt_voltage', 'bus_voltage', 'current' or 'power'",
        ),
    ],
)
def test_chip_specific_point_and_setting_checks(body: str, message: str) -> None:
    (problem,) = problems(one_device(body))
    assert message in problem.message


@pytest.mark.parametrize(
    ("setting", "path", "message"),
    [
        ("fsr = 3.0", "devices[0].fsr", "volts: 6.144, 4.096, 2.048, 1.024, 0.512 or 0.256"),
        ("data_rate = 100", "devices[0].data_rate", "SPS: 8, 16, 32, 64, 128, 250, 475 or 860"),
        ("bus_voltage_range = 32", "devices[0].bus_voltage_range", "chip 'ina219' only"),
    ],
)
def test_bad_ads1115_settings_are_located(setting: str, path: str, message: str) -> None:
    body = f'chip = "ads1115"\naddress = 0x48\n{setting}\n[[devices.points]]\nname = "v"\n'
    (problem,) = problems(one_device(body + 'channel = "ain1"\n'))
    assert problem.path == path
    assert message in problem.message


def test_an_unknown_chip_gets_a_suggestion() -> None:
    text = one_device('chip = "ads1015"\naddress = 0x48\n[[devices.points]]\nname = "v"\n')
    (problem,) = problems(text)
    assert problem.path == "devices[0].chip"
    assert "did you mean 'ads1115'?" in problem.message


def test_oversampling_accepts_only_the_chip_factors() -> None:
    text = one_device(
        'chip = "bme280"\naddress = 0x76\noversampling = { humidity = 3 }\n'
        '[[devices.points]]\nname = "humidity"\n'
    )
    (problem,) = problems(text)
    assert problem.path == "devices[0].oversampling.humidity"
    assert "must be an oversampling factor: 1, 2, 4, 8 or 16 (got 3)" in problem.message


def test_a_zero_scale_is_refused() -> None:
    text = one_device(
        'chip = "sht3x"\naddress = 0x44\n[[devices.points]]\nname = "humidity"\nscale = 0\n'
    )
    (problem,) = problems(text)
    assert problem.path == "devices[0].points[0].scale"


def test_the_examples_in_the_chip_guide_load() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "i2c-chips.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", guide, flags=re.DOTALL)
    text = '[gateway]\nid = "edge-01"\n\n' + "\n".join(blocks)
    cfg = load_config_text(text, filename="i2c-chips.md")
    chips = [d.chip for d in cfg.devices if isinstance(d, I2cDeviceConfig)]
    assert chips == ["bme280", "sht3x", "ads1115", "ina219"]
