"""Price sheets: what a unit of use costs on a public cloud, and on a machine of your own.

The cloud sheet is the settings' ``[prices]`` (AWS list prices by default; docs/costs.md
names each one's page and date). The own-hardware sheet is derived from ``[hardware]``:

- the machine costs ``price / (life_years * 8766)`` an hour (its price spread over its life;
  8,766 hours a year) plus ``watts / 1000 * kwh_price`` (power);
- that hour is shared among its vCPUs, memory and GPUs in the cloud sheet's proportions: a
  vCPU-hour costs ``vcpu_hour * f``, a GB-hour ``gb_hour * f``, a GPU-hour ``gpu_hour * f``,
  where ``f`` is the machine's hourly cost over what its whole capacity would cost an hour on
  the cloud sheet. So the machine, fully used for an hour, costs exactly its hourly cost;
- storage costs ``disk_price_per_tb`` spread over the same life, per GB-month;
- what the control plane does itself (SQL scanning, streams' shards and PUTs, requests) costs
  nothing more: its machine's hours are already paid.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from cumulo.config import OwnHardware, Prices
from cumulo.errors import Invalid

__all__ = ["HOURS_A_YEAR", "SHEETS", "Sheet", "check_sheet", "machine_hour", "own_sheet",
           "sheet_doc"]

Sheet = Literal["cloud", "own"]
SHEETS = ("cloud", "own")
HOURS_A_YEAR = 8766.0  # 365.25 days


def check_sheet(name: str, *, option: str = "--sheet", both: bool = True) -> str:
    """A sheet's name as given, or Invalid naming the choices."""
    choices = (*SHEETS, "both") if both else SHEETS
    if name not in choices:
        raise Invalid(f"{option} {name!r} is not one of {', '.join(choices)}")
    return name


def machine_hour(hardware: OwnHardware) -> float:
    """What the machine costs an hour: its price over its life, plus its power."""
    return (hardware.price / (hardware.life_years * HOURS_A_YEAR)
            + hardware.watts / 1000.0 * hardware.kwh_price)


def own_sheet(cloud: Prices, hardware: OwnHardware) -> Prices:
    """The own-hardware sheet, as prices of the same units as the cloud sheet."""
    capacity = (hardware.vcpus * cloud.vcpu_hour + hardware.memory_gb * cloud.gb_hour
                + hardware.gpus * cloud.gpu_hour)
    factor = machine_hour(hardware) / capacity if capacity > 0 else 0.0
    return replace(
        cloud, vcpu_hour=cloud.vcpu_hour * factor, gb_hour=cloud.gb_hour * factor,
        gpu_hour=cloud.gpu_hour * factor, shard_hour=0.0, million_put_units=0.0,
        storage_gb_month=hardware.disk_price_per_tb / 1000.0 / (hardware.life_years * 12),
        thousand_put_requests=0.0, thousand_get_requests=0.0, tb_scanned=0.0)


def sheet_doc(prices: Prices) -> dict[str, float | str]:
    """A sheet's prices, as the API shows them."""
    return {"vcpu_hour": prices.vcpu_hour, "gb_hour": prices.gb_hour,
            "gpu_hour": prices.gpu_hour, "shard_hour": prices.shard_hour,
            "million_put_units": prices.million_put_units,
            "storage_gb_month": prices.storage_gb_month,
            "thousand_put_requests": prices.thousand_put_requests,
            "thousand_get_requests": prices.thousand_get_requests,
            "tb_scanned": prices.tb_scanned, "currency": "USD"}
