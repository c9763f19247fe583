-- One database per service, created on the first start of the container.
CREATE DATABASE order_service;
CREATE DATABASE inventory_service;
CREATE DATABASE payment_service;
CREATE DATABASE shipping_service;
CREATE DATABASE notification_service;
