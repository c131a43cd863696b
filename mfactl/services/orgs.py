"""Organizations: add and list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mfactl.app import App
from mfactl.db.models import Organization, User
from mfactl.errors import Conflict
from mfactl.services import audit, validation


@dataclass(frozen=True)
class OrgInfo:
    slug: str
    name: str
    created_at: datetime
    users: int

    def to_json(self) -> dict[str, object]:
        """An organization of `org list --json`."""
        return {
            "org": self.slug,
            "name": self.name,
            "users": self.users,
            "created_at": self.created_at,
        }

    def added_json(self) -> dict[str, object]:
        """`org add --json`: a new organization has no users to count."""
        return {"org": self.slug, "name": self.name, "created_at": self.created_at}


def add_org(app: App, slug: str, name: str | None = None) -> OrgInfo:
    slug = validation.org_slug(slug)
    name = validation.org_name(name, slug)
    with app.uow() as uow:
        if uow.session.scalars(select(Organization).where(Organization.slug == slug)).first():
            raise Conflict(f"organization {slug} already exists")
        org = Organization(slug=slug, name=name, created_at=app.now())
        uow.session.add(org)
        audit.record(uow.session, app, "org.add", org=slug, details={"name": name})
        try:
            uow.commit()
        except IntegrityError:
            raise Conflict(f"organization {slug} already exists") from None
        return OrgInfo(org.slug, org.name, org.created_at, 0)


def list_orgs(app: App) -> list[OrgInfo]:
    counts = (
        select(User.organization_id, func.count().label("n"))
        .group_by(User.organization_id)
        .subquery()
    )
    query = (
        select(Organization, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.organization_id == Organization.id)
        .order_by(Organization.slug)
    )
    with app.uow() as uow:
        return [
            OrgInfo(org.slug, org.name, org.created_at, int(n))
            for org, n in uow.session.execute(query)
        ]
