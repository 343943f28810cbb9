"""The budget account rules (pure): reserve the worst case, settle the real cost, warn once per level."""

from decimal import Decimal as D

from shared.budget import Account, crossed, follow_config, release, reserve, set_limit


def test_a_reservation_that_does_not_fit_is_refused_under_hard_and_made_under_soft():
    acct = Account(limit="1", spent="0.5", reserved="0.3")
    same, fits = reserve(acct, D("0.25"), hard=True)
    assert not fits and same == acct
    soft, fits = reserve(acct, D("0.25"), hard=False)
    assert not fits and soft.reserved == "0.55"
    held, fits = reserve(acct, D("0.2"), hard=True)
    assert fits and held.reserved == "0.5"


def test_no_limit_always_fits():
    assert reserve(Account(limit="0", spent="1000"), D("5"), hard=True)[1]


def test_settling_swaps_the_reservation_for_the_real_cost_and_warns_once_per_level():
    acct = release(Account(limit="1", reserved="0.4", spent="0.3"), D("0.4"), D("0.25"))
    assert (acct.reserved, acct.spent) == ("0", "0.55")
    assert crossed(acct, [0.5, 0.8, 0.95]) == [0.5]
    acct = Account(limit="1", spent="0.96", warned=[0.5])
    assert crossed(acct, [0.5, 0.8, 0.95]) == [0.8, 0.95]


def test_a_new_limit_clears_exhaustion_and_warnings_above_the_new_share():
    acct = Account(limit="1", spent="0.9", warned=[0.5, 0.8], exhausted=True)
    raised = set_limit(acct, D("10"))
    assert raised.limit == "10" and raised.limit_source == "set" and not raised.exhausted and raised.warned == []
    # a limit a person set is kept when the config says otherwise; one from config follows it
    assert follow_config(raised, D("1")).limit == "10"
    assert follow_config(Account(limit="1"), D("2")).limit == "2"
