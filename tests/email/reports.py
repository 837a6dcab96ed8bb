"""Reports as mail systems send them, built with the ``email`` package: an RFC 3464 DSN and
an RFC 5965 (ARF) complaint about a message Tidings sent."""

from __future__ import annotations

from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid


def _fields(**values: str) -> Message:
    block = Message()
    for name, value in values.items():
        block[name.replace("_", "-")] = value
    return block


def dsn(
    original: EmailMessage,
    *,
    to: str,
    recipient: str,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
) -> bytes:
    """A delivery status notification from a remote MTA, about ``original``."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.net>"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = formatdate(usegmt=True)
    report["Message-ID"] = make_msgid(domain="mx.example.net")
    report.attach(
        MIMEText(
            f"I'm sorry to have to inform you that your message could not\n"
            f"be delivered to {recipient}.\n"
        )
    )
    status_part = MIMEBase("message", "delivery-status")
    per_message = _fields(
        Reporting_MTA="dns; mx.example.net",
        X_Postfix_Queue_ID="4Q2bXk1Zx7z9rwL",
        Arrival_Date=formatdate(usegmt=True),
    )
    per_recipient = _fields(
        Final_Recipient=f"rfc822; {recipient}",
        Original_Recipient=f"rfc822;{recipient}",
        Action=action,
        Status=status,
        Remote_MTA="dns; mailbox.example.org",
        Diagnostic_Code=diagnostic.format(rcpt=recipient),
    )
    status_part.attach(per_message)
    status_part.attach(per_recipient)
    report.attach(status_part)
    headers = "".join(f"{name}: {value}\n" for name, value in original.items())
    report.attach(MIMEText(headers, "rfc822-headers"))
    return report.as_bytes()


def arf(original: EmailMessage, *, to: str, feedback_type: str = "abuse", rcpt: str = "") -> bytes:
    """A feedback-loop complaint (the recipient pressed "this is spam")."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "Feedback Loop <fbl@isp.example.net>"
    report["To"] = to
    report["Subject"] = "FW: complaint about a message from your network"
    report["Date"] = formatdate(usegmt=True)
    report["Message-ID"] = make_msgid(domain="isp.example.net")
    report.attach(MIMEText("This is an email abuse report for an email message received.\n"))
    feedback = MIMEBase("message", "feedback-report")
    fields = {"Feedback_Type": feedback_type, "User_Agent": "ExampleFBL/1.0", "Version": "1"}
    if rcpt:
        fields["Original_Rcpt_To"] = rcpt
    feedback.attach(_fields(**fields, Arrival_Date=formatdate(usegmt=True)))
    report.attach(feedback)
    report.attach(MIMEMessage(original))
    return report.as_bytes()
