<?php
/**
 * Plugin Name: Store Companion
 * Description: Loads the Store Companion storefront snippet with this shop's key, serves its web push service worker on the shop's own domain, and turns cart recovery links back into carts.
 * Version: 1.0.0
 * Requires at least: 6.3
 * Requires PHP: 7.4
 * WC requires at least: 8.0
 * License: MIT
 *
 * Settings → Store Companion: the service address (its PUBLIC_URL) and the shop's public key.
 * What it adds to the shop:
 *   - <script async src="SERVICE/s/snippet.js" data-key="KEY"> on every front-end page;
 *   - /?store_companion_sw=1 : the service worker (a stub that imports SERVICE/s/sw.js), scope "/";
 *   - /?store_companion_cart=ID:QTY,ID:QTY : empties the visitor's cart, adds those products
 *     (simple products or variations) and redirects to the checkout; the service builds these links.
 */

defined( 'ABSPATH' ) || exit;

const STORE_COMPANION_OPTION = 'store_companion';

/** The saved settings, with the service address normalised (https, no trailing slash). */
function store_companion_settings() {
	$saved = get_option( STORE_COMPANION_OPTION, array() );
	$saved = is_array( $saved ) ? $saved : array();
	return array(
		'service_url' => untrailingslashit( esc_url_raw( isset( $saved['service_url'] ) ? $saved['service_url'] : '' ) ),
		'public_key'  => preg_replace( '/[^A-Za-z0-9_-]/', '', isset( $saved['public_key'] ) ? $saved['public_key'] : '' ),
	);
}

function store_companion_configured() {
	$settings = store_companion_settings();
	return '' !== $settings['service_url'] && '' !== $settings['public_key'];
}

/* --- the snippet ------------------------------------------------------------------------------------------ */

add_action(
	'wp_enqueue_scripts',
	function () {
		if ( ! store_companion_configured() ) {
			return;
		}
		$settings = store_companion_settings();
		// Loaded async so it never holds up rendering; the version is the service's (it caches by ETag).
		wp_enqueue_script( 'store-companion', $settings['service_url'] . '/s/snippet.js', array(), null, array( 'strategy' => 'async' ) );
	}
);

add_filter(
	'script_loader_tag',
	function ( $tag, $handle ) {
		if ( 'store-companion' !== $handle ) {
			return $tag;
		}
		$settings = store_companion_settings();
		$tag      = str_replace( ' src=', ' data-key="' . esc_attr( $settings['public_key'] ) . '" src=', $tag );
		if ( false === strpos( $tag, ' async' ) ) {
			$tag = str_replace( '<script ', '<script async ', $tag );
		}
		return $tag;
	},
	10,
	2
);

/* --- the service worker, on the shop's own origin ---------------------------------------------------------------- */

add_action(
	'init',
	function () {
		if ( ! isset( $_GET['store_companion_sw'] ) ) { // phpcs:ignore WordPress.Security.NonceVerification
			return;
		}
		if ( ! store_companion_configured() ) {
			status_header( 404 );
			exit;
		}
		$settings = store_companion_settings();
		nocache_headers();
		header( 'Content-Type: application/javascript; charset=utf-8' );
		header( 'Service-Worker-Allowed: /' );
		echo 'self.STORE_COMPANION=' . wp_json_encode( array( 'key' => $settings['public_key'], 'api' => $settings['service_url'] ) ) . ";\n";
		echo 'importScripts(' . wp_json_encode( $settings['service_url'] . '/s/sw.js' ) . ");\n";
		exit;
	},
	0
);

/* --- cart recovery links ------------------------------------------------------------------------------------------- */

add_action(
	'wp_loaded',
	function () {
		if ( empty( $_GET['store_companion_cart'] ) || ! function_exists( 'WC' ) || null === WC()->cart ) { // phpcs:ignore WordPress.Security.NonceVerification
			return;
		}
		$raw = sanitize_text_field( wp_unslash( $_GET['store_companion_cart'] ) ); // phpcs:ignore WordPress.Security.NonceVerification
		if ( WC()->session && ! WC()->session->has_session() ) {
			WC()->session->set_customer_session_cookie( true );
		}
		WC()->cart->empty_cart();
		foreach ( array_slice( explode( ',', $raw ), 0, 100 ) as $line ) {
			$parts    = explode( ':', $line );
			$id       = absint( $parts[0] );
			$quantity = isset( $parts[1] ) ? min( 10000, max( 1, absint( $parts[1] ) ) ) : 1;
			$product  = $id ? wc_get_product( $id ) : null;
			if ( ! $product || ! $product->is_purchasable() ) {
				continue; // a product gone since the cart was left is skipped, the rest is restored
			}
			if ( $product->is_type( 'variation' ) ) {
				WC()->cart->add_to_cart( $product->get_parent_id(), $quantity, $id, $product->get_variation_attributes() );
			} else {
				WC()->cart->add_to_cart( $id, $quantity );
			}
		}
		// Campaign parameters survive the redirect so the visit is still attributed.
		$keep = array();
		foreach ( $_GET as $key => $value ) { // phpcs:ignore WordPress.Security.NonceVerification
			if ( is_string( $value ) && 0 === strpos( $key, 'utm_' ) ) {
				$keep[ sanitize_key( $key ) ] = rawurlencode( sanitize_text_field( wp_unslash( $value ) ) );
			}
		}
		wp_safe_redirect( add_query_arg( $keep, wc_get_checkout_url() ) );
		exit;
	},
	20
);

/* --- settings page ---------------------------------------------------------------------------------------------------- */

add_action(
	'admin_init',
	function () {
		register_setting(
			'store_companion',
			STORE_COMPANION_OPTION,
			array(
				'type'              => 'array',
				'sanitize_callback' => function ( $input ) {
					$input = is_array( $input ) ? $input : array();
					return array(
						'service_url' => esc_url_raw( isset( $input['service_url'] ) ? trim( $input['service_url'] ) : '', array( 'https', 'http' ) ),
						'public_key'  => preg_replace( '/[^A-Za-z0-9_-]/', '', isset( $input['public_key'] ) ? $input['public_key'] : '' ),
					);
				},
			)
		);
	}
);

add_action(
	'admin_menu',
	function () {
		add_options_page(
			'Store Companion',
			'Store Companion',
			'manage_options',
			'store-companion',
			function () {
				$settings = store_companion_settings();
				?>
				<div class="wrap">
					<h1>Store Companion</h1>
					<form method="post" action="options.php">
						<?php settings_fields( 'store_companion' ); ?>
						<table class="form-table" role="presentation">
							<tr>
								<th scope="row"><label for="store-companion-url">Service address</label></th>
								<td><input id="store-companion-url" class="regular-text" type="url" name="<?php echo esc_attr( STORE_COMPANION_OPTION ); ?>[service_url]" value="<?php echo esc_attr( $settings['service_url'] ); ?>" placeholder="https://companion.example.com"></td>
							</tr>
							<tr>
								<th scope="row"><label for="store-companion-key">Shop key</label></th>
								<td><input id="store-companion-key" class="regular-text" name="<?php echo esc_attr( STORE_COMPANION_OPTION ); ?>[public_key]" value="<?php echo esc_attr( $settings['public_key'] ); ?>"></td>
							</tr>
						</table>
						<?php submit_button(); ?>
					</form>
				</div>
				<?php
			}
		);
	}
);
