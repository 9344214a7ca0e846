"""The UCI Online Retail converter: returns are netted against the purchases they undo."""

from __future__ import annotations

from pathlib import Path

from engine.datasets import load_online_retail

RETAIL_HEADER = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
)


def retail(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "retail.csv"
    path.write_text(RETAIL_HEADER + "".join(row + "\n" for row in rows))
    return path


def purchases(path: Path) -> list[tuple[str, str, str, str]]:
    """(customer, item, timestamp, quantity) of every purchase the converter writes."""
    return [(u, i, t, q) for u, i, t, _, q in load_online_retail(path).interactions]


def test_a_purchase_cancelled_in_full_does_not_train_as_one(tmp_path: Path) -> None:
    """Customer 12346's only order, 74,215 of 23166, was cancelled 16 minutes later."""
    path = retail(
        tmp_path,
        "541431,23166,MEDIUM CERAMIC TOP STORAGE JAR,74215,2011-01-18 10:01:00,1.04,12346.0,UK",
        "541432,23166,MEDIUM CERAMIC TOP STORAGE JAR,6,2011-01-18 10:05:00,1.04,17850.0,UK",
        "C541433,23166,MEDIUM CERAMIC TOP STORAGE JAR,-74215,2011-01-18 10:17:00,1.04,12346.0,UK",
    )
    assert purchases(path) == [("17850", "23166", "2011-01-18T10:05:00Z", "6")]
    # the product was sold, so it stays in the catalog with its title and price
    assert [row["item_id"] for row in load_online_retail(path).catalog] == ["23166"]


def test_a_partial_return_comes_off_the_latest_purchases_first(tmp_path: Path) -> None:
    path = retail(
        tmp_path,
        "536365,22728,ALARM CLOCK BAKELIKE PINK,10,2011-01-05 09:00:00,3.75,12583.0,UK",
        "536366,22728,ALARM CLOCK BAKELIKE PINK,5,2011-02-05 09:00:00,3.75,12583.0,UK",
        "536367,22727,ALARM CLOCK BAKELIKE RED,4,2011-02-05 09:00:00,3.75,12583.0,UK",
        "C536368,22728,ALARM CLOCK BAKELIKE PINK,-7,2011-03-01 09:00:00,3.75,12583.0,UK",
    )
    # 7 returned: all 5 of February's order, then 2 of January's; the red clock is untouched
    assert purchases(path) == [
        ("12583", "22728", "2011-01-05T09:00:00Z", "8"),
        ("12583", "22727", "2011-02-05T09:00:00Z", "4"),
    ]


def test_a_return_never_undoes_a_later_purchase(tmp_path: Path) -> None:
    """Goods returned on the file's first day were bought before it: later orders stand."""
    path = retail(
        tmp_path,
        "C536379,22355,CHARLOTTE BAG SUKI DESIGN,-2,2010-12-01 14:30:00,0.85,17841.0,UK",
        "536380,22355,CHARLOTTE BAG SUKI DESIGN,6,2010-12-06 14:51:00,0.85,17841.0,UK",
        "536381,22355,CHARLOTTE BAG SUKI DESIGN,10,2010-12-14 14:40:00,0.85,17841.0,UK",
        "C536382,22355,CHARLOTTE BAG SUKI DESIGN,-12,2010-12-20 10:00:00,0.85,17841.0,UK",
    )
    # December 20th's 12 take all 10 of the 14th and 2 of the 6th; the first return, nothing
    assert purchases(path) == [("17841", "22355", "2010-12-06T14:51:00Z", "4")]


def test_a_return_by_another_customer_changes_nobody_else(tmp_path: Path) -> None:
    path = retail(
        tmp_path,
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,UK",
        "C536366,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-6,2010-12-01 09:00:00,2.55,13047.0,UK",
        "C536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-6,2010-12-01 09:00:00,2.55,,UK",
    )
    assert purchases(path) == [("17850", "85123A", "2010-12-01T08:26:00Z", "6")]


def test_a_sample_names_the_same_buyers_whether_or_not_their_orders_were_returned(
    tmp_path: Path,
) -> None:
    """Netting returns must not reshuffle a seeded sample (demo customers and tests name them)."""
    from engine.datasets import sample_customers

    rows = [
        f"5{n:05},2316{n % 7},JAR,1,2011-01-18 10:{n % 60:02}:00,1.04,{12000 + n}.0,UK"
        for n in range(40)
    ]
    kept = retail(tmp_path, *rows)
    returned = tmp_path / "returned.csv"
    # The first ten buyers return their order: they drop out of the interactions...
    returns = [
        f"C6{n:05},2316{n % 7},JAR,-1,2011-01-19 10:00:00,1.04,{12000 + n}.0,UK" for n in range(10)
    ]
    returned.write_text(RETAIL_HEADER + "".join(row + "\n" for row in rows + returns))
    full, netted = load_online_retail(kept), load_online_retail(returned)
    assert {row[0] for row in netted.interactions} == {str(12000 + n) for n in range(10, 40)}
    # ...but a sample with the same seed still draws from every buyer, so it names the same ones.
    chosen = {row[0] for row in sample_customers(full, 12, seed=3).interactions}
    left = {row[0] for row in sample_customers(netted, 12, seed=3).interactions}
    assert len(chosen) == 12
    assert left == chosen - {str(12000 + n) for n in range(10)}
