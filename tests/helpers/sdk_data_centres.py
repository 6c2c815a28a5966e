"""The SDK's own data centres, by Zoho's location code: what ours must agree with."""

from zohocrmsdk.src.com.zoho.crm.api.dc import (
    AUDataCenter,
    CADataCenter,
    CNDataCenter,
    EUDataCenter,
    INDataCenter,
    JPDataCenter,
    SADataCenter,
    USDataCenter,
)

SDK_DATA_CENTRES = {
    "us": USDataCenter,
    "eu": EUDataCenter,
    "in": INDataCenter,
    "au": AUDataCenter,
    "jp": JPDataCenter,
    "cn": CNDataCenter,
    "ca": CADataCenter,
    "sa": SADataCenter,
}
