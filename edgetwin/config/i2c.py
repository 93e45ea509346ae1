"""I2C buses and chips: the config fragment of the I2C drivers (docs/i2c-chips.md).

Chip settings are optional keys on the device; each applies to one chip only and is checked
against the device's ``chip``. A point's quantity is its name unless ``quantity`` says
otherwise (an ADS1115 has one quantity, ``voltage``, measured on the point's ``channel``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edgetwin.config.common import DeviceBase, Model, Name, PointBase
from edgetwin.protocols.i2c import CHIPS, ads1115, ina219, sht3x

Chip = Literal["bme280", "sht3x", "ads1115", "ina219"]
# Integer choices are checked by validators, not Literals, so a bad value gets a message
# that lists the choices (the loader words only string Literals).
OVERSAMPLING = (1, 2, 4, 8, 16)
DATA_RATES = tuple(ads1115.DATA_RATE)
BUS_VOLTAGE_RANGES = tuple(ina219.BRNG)

DEFAULT_REPEATABILITY: sht3x.Repeatability = "high"
DEFAULT_FSR = 2.048
DEFAULT_DATA_RATE = 128
DEFAULT_BUS_VOLTAGE_RANGE = 32

#: Device keys that only make sense for one chip.
_CHIP_KEYS: dict[str, str] = {
    "oversampling": "bme280",
    "repeatability": "sht3x",
    "fsr": "ads1115",
    "data_rate": "ads1115",
    "shunt_ohms": "ina219",
    "max_expected_amps": "ina219",
    "bus_voltage_range": "ina219",
}


def _one_of(options: list[str]) -> str:
    quoted = [repr(o) for o in options]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _choice(options: tuple[float, ...], what: str) -> Callable[[float | None], float | None]:
    def check(value: float | None) -> float | None:
        if value is not None and value not in options:
            listed = _one_of([f"{o:g}" for o in options]).replace("'", "")
            raise ValueError(f"must be {what}: {listed}")
        return value

    return check


_check_fsr = _choice(tuple(ads1115.PGA), "an ADS1115 full-scale range in volts")


class I2cBusConfig(Model):
    """An I2C bus, /dev/i2c-N."""

    kind: Literal["i2c"]
    name: Name
    bus: int = Field(ge=0, le=255, description="N of /dev/i2c-N")
    timeout: float = Field(1.0, gt=0, le=60)


class Bme280Oversampling(Model):
    """BME280 oversampling per measurement (x1 .. x16); more is finer and slower."""

    temperature: int = 1
    pressure: int = 1
    humidity: int = 1

    _factor = field_validator("temperature", "pressure", "humidity")(
        _choice(OVERSAMPLING, "an oversampling factor")
    )


class I2cPointConfig(PointBase):
    """One quantity a chip measures (its name is the quantity unless ``quantity`` is set)."""

    quantity: str | None = Field(None, description="default: the point's name")
    channel: ads1115.Channel | None = Field(None, description="ADS1115 input (pair)")
    fsr: float | None = Field(None, description="ADS1115 full-scale range, V")
    scale: float = 1.0
    offset: float = 0.0

    _fsr = field_validator("fsr")(_check_fsr)

    @model_validator(mode="after")
    def _scale_nonzero(self) -> I2cPointConfig:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class I2cDeviceConfig(DeviceBase):
    """A chip at an address on an I2C bus, its settings and the quantities read from it."""

    driver: Literal["i2c"]
    chip: Chip
    address: int = Field(ge=0x03, le=0x77)
    points: list[I2cPointConfig] = Field(min_length=1)
    oversampling: Bme280Oversampling | None = None
    repeatability: sht3x.Repeatability | None = None
    fsr: float | None = Field(None, description="ADS1115 full-scale range, V")
    data_rate: int | None = Field(None, description="ADS1115 samples per second")
    shunt_ohms: float | None = Field(None, gt=0, le=100, description="INA219 shunt, ohm")
    max_expected_amps: float | None = Field(None, gt=0, le=1000, description="INA219, A")
    bus_voltage_range: int | None = Field(None, description="INA219 bus full scale, V")

    _fsr = field_validator("fsr")(_check_fsr)
    _rate = field_validator("data_rate")(_choice(DATA_RATES, "an ADS1115 data rate in SPS"))
    _brng = field_validator("bus_voltage_range")(
        _choice(BUS_VOLTAGE_RANGES, "an INA219 bus voltage range in volts")
    )

    @field_validator("address")
    @classmethod
    def _address_fits_chip(cls, value: int, info: ValidationInfo) -> int:
        chip = info.data.get("chip")
        if chip is None:
            return value
        allowed = CHIPS[chip].addresses
        if value not in allowed:
            names = [f"0x{a:02X}" for a in allowed]
            span = f"{names[0]}..{names[-1]}" if len(names) > 2 else " or ".join(names)
            raise ValueError(f"0x{value:02X} does not fit chip {chip!r}, which answers at {span}")
        return value

    @field_validator(*_CHIP_KEYS)
    @classmethod
    def _key_fits_chip(cls, value: object, info: ValidationInfo) -> object:
        chip, owner = info.data.get("chip"), _CHIP_KEYS[str(info.field_name)]
        if chip is not None and chip != owner:
            raise ValueError(f"applies to chip {owner!r} only; this device is a {chip!r}")
        return value

    @model_validator(mode="after")
    def _points_fit_chip(self) -> I2cDeviceConfig:
        valid = CHIPS[self.chip].quantities
        for i, point in enumerate(self.points):
            where = f"points[{i}] ({point.name!r})"
            quantity = self.quantity(i)
            if quantity not in valid:
                hint = "" if point.quantity else ", or keep the name and set quantity"
                raise ValueError(
                    f"{where}: chip {self.chip!r} does not measure {quantity!r}; "
                    f"it measures {_one_of(list(valid))}{hint}"
                )
            if self.chip == "ads1115" and point.channel is None:
                channels = _one_of(list(ads1115.MUX))
                raise ValueError(f"{where}: an ads1115 point needs a channel: {channels}")
            for key in ("channel", "fsr"):
                if self.chip != "ads1115" and getattr(point, key) is not None:
                    raise ValueError(f"{where}: {key} applies to chip 'ads1115' only")
        if self.chip == "ina219":
            if self.shunt_ohms is None or self.max_expected_amps is None:
                raise ValueError(
                    "chip 'ina219' needs shunt_ohms (the shunt resistor, ohm) and "
                    "max_expected_amps (the largest current to measure, A)"
                )
            ina219.scaling(self.shunt_ohms, self.max_expected_amps)  # ValueError: too much
        return self

    def quantity(self, index: int) -> str:
        """What point ``index`` measures: its quantity, else voltage (ads1115) or its name."""
        point = self.points[index]
        if point.quantity is not None:
            return point.quantity
        return "voltage" if self.chip == "ads1115" else point.name

    def point_fsr(self, index: int) -> float:
        """The ADS1115 full-scale range for point ``index`` (point, device, then default)."""
        return self.points[index].fsr or self.fsr or DEFAULT_FSR
