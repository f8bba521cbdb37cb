"""Approval gates: what the decisions so far mean under the gate's policy. Pure.

- `any`: the first decision counts, approve or reject.
- `all`: every listed approver must approve; one rejection rejects.
- `quorum`: `quorum` approvals approve; rejections that leave too few approvers to reach it reject
  (without a list of approvers: `quorum` rejections).
- A decision by `timeout` (nobody decided in time) is final, whatever the policy.

Each person decides once: the supervisor refuses a second decision by the same name, and a name
not in `approvers` (when there is a list), so `verdict` can count decisions as they come.
"""

from __future__ import annotations

from collections.abc import Sequence

from rnix.core.model import Approval

TIMEOUT = "timeout"

Decision = tuple[str, str, str | None]  # (by, approve | reject, message)


def verdict(approval: Approval, decisions: Sequence[Decision]) -> tuple[str, str]:
    """("approved" | "rejected" | "waiting", what it means in words)."""
    for by, decision, _ in decisions:
        if by == TIMEOUT:
            word = "approved" if decision == "approve" else "rejected"
            return word, f"{word} by timeout: nobody decided in time"
    if not decisions:
        return "waiting", _needs(approval, [], [])
    approvals = [by for by, decision, _ in decisions if decision == "approve"]
    rejections = [(by, message) for by, decision, message in decisions if decision != "approve"]
    if approval.policy == "any":
        by, decision, message = decisions[0]
        if decision == "approve":
            return "approved", f"approved by {by}"
        return "rejected", _rejected(by, message)
    if approval.policy == "all":
        if rejections:
            return "rejected", _rejected(*rejections[0])
        if set(approval.approvers) <= set(approvals):
            return "approved", "approved by " + ", ".join(approvals)
        return "waiting", _needs(approval, approvals, rejections)
    needed = approval.quorum or 1
    if len(approvals) >= needed:
        return "approved", "approved by " + ", ".join(approvals)
    could = (len(approval.approvers) - len(rejections)) if approval.approvers else None
    if (could is not None and could < needed) or (could is None and len(rejections) >= needed):
        by, message = rejections[-1]
        return (
            "rejected",
            f"rejected: {len(rejections)} rejection(s), the quorum of {needed} cannot be met"
            + (f" (last: {by}: {message})" if message else f" (last: {by})"),
        )
    return "waiting", _needs(approval, approvals, rejections)


def may_decide(approval: Approval, decisions: Sequence[Decision], by: str) -> str | None:
    """None when `by` may decide now, else why not."""
    if by == TIMEOUT:
        return f"'{TIMEOUT}' is the gate's own name for a timeout: decide under your name (--as)"
    if approval.approvers and by not in approval.approvers:
        return f"{by} is not an approver of this agent (approvers: {', '.join(approval.approvers)})"
    if any(d[0] == by for d in decisions):
        return f"{by} has already decided"
    return None


def _needs(approval: Approval, approvals: Sequence[str], rejections: Sequence[object]) -> str:
    if approval.policy == "all":
        missing = [a for a in approval.approvers if a not in approvals]
        return "waiting for " + ", ".join(missing)
    if approval.policy == "quorum":
        needed = (approval.quorum or 1) - len(approvals)
        return f"waiting for {needed} more approval{'' if needed == 1 else 's'}"
    who = ", ".join(approval.approvers) if approval.approvers else "anyone"
    return f"waiting for a decision ({who})"


def _rejected(by: str, message: str | None) -> str:
    return f"rejected by {by}" + (f": {message}" if message else "")
