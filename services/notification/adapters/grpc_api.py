"""The gRPC face of notification: `cinema.notification.v1.NotificationService`.

Any signed-in caller reads their own notifications (the token's subject is the customer id);
someone else's is NOT_FOUND, so ids cannot be probed. Internal states map onto the contract's:
PENDING and RETRYING are PENDING, SENT is SENT, PARKED is FAILED.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from cinema.notification.v1 import notification_pb2 as pb
from cinema.notification.v1 import notification_pb2_grpc as pb_grpc
from services.kit.auth import current_caller
from services.kit.caller import require_authenticated
from services.kit.validation import validate
from services.notification.adapters.store import store_outage_is_unavailable
from services.notification.domain.model import DeliveryState
from services.notification.service_layer import notifications as use_cases
from services.notification.service_layer.notifications import NotificationDependencies
from services.notification.service_layer.ports import Notification

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NotificationService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]

_STATES = {
    DeliveryState.PENDING: pb.NOTIFICATION_STATE_PENDING,
    DeliveryState.RETRYING: pb.NOTIFICATION_STATE_PENDING,
    DeliveryState.SENT: pb.NOTIFICATION_STATE_SENT,
    DeliveryState.PARKED: pb.NOTIFICATION_STATE_FAILED,
}


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def notification_message(n: Notification) -> pb.Notification:
    message = pb.Notification(
        id=n.id,
        customer_id=n.customer_id,
        channel=pb.NOTIFICATION_CHANNEL_EMAIL,
        recipient=n.recipient,
        subject=n.subject,
        body=n.body,
        reservation_id=n.reservation_id,
        event_id=n.event_id,
        event_type=n.event_type,
        state=_STATES[n.state],
        create_time=_timestamp(n.created_at),
    )
    if n.sent_at is not None and n.state is DeliveryState.SENT:
        message.send_time.CopyFrom(_timestamp(n.sent_at))
    return message


def _customer_id() -> str:
    return require_authenticated(current_caller()).subject or ""


class NotificationServicer(pb_grpc.NotificationServiceServicer):
    def __init__(self, deps: NotificationDependencies) -> None:
        self._deps = deps

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        customer_id = _customer_id()
        validate(request)
        with store_outage_is_unavailable():
            page = await use_cases.list_notifications(customer_id, request.page_size, request.page_token, self._deps)
        return pb.ListNotificationsResponse(
            notifications=[notification_message(n) for n in page.notifications],
            next_page_token=page.next_page_token,
        )

    async def GetNotification(self, request: pb.GetNotificationRequest, context: Context) -> pb.GetNotificationResponse:
        customer_id = _customer_id()
        validate(request)
        with store_outage_is_unavailable():
            found = await use_cases.get_notification(customer_id, request.notification_id, self._deps)
        return pb.GetNotificationResponse(notification=notification_message(found))


def register(server: grpc.aio.Server, deps: NotificationDependencies) -> list[str]:
    pb_grpc.add_NotificationServiceServicer_to_server(NotificationServicer(deps), server)
    return [SERVICE_NAME]
