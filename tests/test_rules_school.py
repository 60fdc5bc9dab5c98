"""School rule: arrival and departure notices to guardians; "not arrived by" alerts."""

from __future__ import annotations

from test_rules_timeline import TZ, Step, assert_restart_safe, heard, kinds, rec, t, tick

from collector.domain import Contact, School, Student
from collector.rules import EngineConfig, StaticRegistry
from collector.rules.actions import Notice, RaiseAlert, ResolveAlert
from collector.rules.gateway import GatewayConfig

MUM = Contact("c-m", "Liu Yan", "json://localhost/mum", "guardian", 0)
DAD = Contact("c-d", "Xu Gang", "json://localhost/dad", "guardian", 0)
SCHOOL = School("s-1", "Willow Primary", frozenset({"gw-school"}), "08:30")
NO_CHECK = School("s-2", "Pine Middle", frozenset({"gw-pine"}))
ANNA = Student("st-1", "Xu Anna", "card:aaaa", "s-1", (MUM, DAD))
BO = Student("st-2", "Xu Bo", "card:bbbb", "s-1", (MUM,))
CHEN = Student("st-3", "Wu Chen", "card:cccc", "s-2", (DAD,))
REG = StaticRegistry(schools=[SCHOOL, NO_CHECK], students=[ANNA, BO, CHEN])
CONFIG = EngineConfig(tz=TZ, gateway=GatewayConfig(health_interval_s=86400))


def card(student: Student, ts: int, gw: str = "gw-school") -> Step:
    return heard(gw, rec("tap", student.card, {"clone_proof": False}, ts, "student-card@1"))


def test_a_school_day() -> None:
    steps = [
        tick(t("07:00")),
        card(ANNA, t("07:40")),
        card(ANNA, t("07:40") + 20_000),  # double tap
        card(ANNA, t("07:41"), gw="gw-elsewhere"),  # not the school's gateway
        tick(t("08:29")),
        tick(t("08:30")),
        tick(t("08:40")),
        card(BO, t("08:45")),
        card(ANNA, t("16:00")),
        card(ANNA, t("07:35", day=1)),
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    (arrived,) = out[1]
    assert isinstance(arrived, Notice) and arrived.kind == "school_arrival"
    assert arrived.contacts == (MUM, DAD)
    assert arrived.message == "Xu Anna arrived at Willow Primary at 07:40."
    assert "Anna" not in arrived.title + str(arrived.data)
    assert arrived.data == {"student": "st-1", "school": "s-1", "gw": "gw-school", "ts": t("07:40")}
    assert out[2] == [] and out[3] == [] and out[4] == []
    (late,) = out[5]  # Bo only: Anna has arrived; Chen's school has no check
    assert isinstance(late, RaiseAlert) and (late.kind, late.key) == ("school_not_arrived", "st-2")
    assert late.contacts == (MUM,)
    assert out[6] == []
    assert kinds(out[7]) == [("Notice", "school_arrival"), ("ResolveAlert", "school_not_arrived")]
    assert out[7][1] == ResolveAlert("school_not_arrived", "st-2", "arrived late")
    assert kinds(out[8]) == [("Notice", "school_departure")]
    assert kinds(out[9]) == [("Notice", "school_arrival")]  # a new day starts with an arrival


def test_no_check_on_weekends_nor_for_deadlines_before_start() -> None:
    steps = [
        tick(t("09:00")),  # the rule starts after Monday's deadline: not judged
        tick(t("08:31", day=5)),  # Saturday
        tick(t("08:31", day=7)),  # next Monday: judged
    ]
    out = assert_restart_safe(CONFIG, REG, steps)
    assert out[0] == [] and out[1] == []
    assert sorted(a.key for a in out[2] if isinstance(a, RaiseAlert)) == ["st-1", "st-2"]
